"""The local engine: any ASE calculator, relaxations, the NEB recipe and the study runner.

* :mod:`~pqdflow.workflows.engine.calculators`: the mock pair potential (plumbing, not
  physics) and a force-call counter.
* :mod:`~pqdflow.workflows.engine.ase_backend`: :class:`AseBackend` (any ASE calculator
  behind the backend protocol) and the CHGNet loader.
* :mod:`~pqdflow.workflows.engine.relax`, :mod:`~pqdflow.workflows.engine.neb`,
  :mod:`~pqdflow.workflows.engine.band_optimizer`: relaxations and the NEB recipe.
* :mod:`~pqdflow.workflows.engine.runner`: :func:`run_study`, a whole study in-process.
* :mod:`~pqdflow.workflows.engine.prerelax`: ML pre-relaxation before a VASP dry run.
"""
