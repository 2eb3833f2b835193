"""VASP: input sets (YAML presets), the dry run, custodian jobs and the ``vasp`` backend.

* :mod:`~pqdflow.workflows.vasp.inputsets`: :class:`VaspInputSet`, :func:`get_input_set`,
  and :func:`relax_input_set` / :func:`neb_input_set`, the one function that turns a planned
  calculation into its input set (used by the dry run and the VASP backend alike).
* :mod:`~pqdflow.workflows.vasp.vaspfiles`: prepared input folders (hash, atomic writes).
* :mod:`~pqdflow.workflows.vasp.dryrun`: :func:`write_study_inputs`, every folder of a plan.
* :mod:`~pqdflow.workflows.vasp.custodian_jobs`: custodian jobs, handlers and validators.
* :mod:`~pqdflow.workflows.vasp.backend`: :class:`VaspBackend` (inputs -> custodian -> parse).
* :mod:`~pqdflow.workflows.vasp.vib_inputs`: finite-displacement folders for vibrations.
"""
