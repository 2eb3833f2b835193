"""pqdflow.workflows: everything that runs or prepares calculations.

Subpackages, in the order data flows through them:

* :mod:`~pqdflow.workflows.study`: the study file, its plan and the one schedule of steps.
* :mod:`~pqdflow.workflows.backends`: the one backend registry (:func:`get_backend`).
* :mod:`~pqdflow.workflows.vasp`: VASP input sets, dry run, custodian, the VASP backend.
* :mod:`~pqdflow.workflows.engine`: ASE calculators, relaxations, NEB, the local runner.
* :mod:`~pqdflow.workflows.fireworks`: FireWorks tasks, workflows and launchpads.
* :mod:`~pqdflow.workflows.testing`: the fake VASP used by the tests.
"""
