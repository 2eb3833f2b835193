"""FireWorks at the edge: one Firework per scheduled step, launchpads (MongoDB or embedded).

* :mod:`~pqdflow.workflows.fireworks.tasks`: :class:`StepTask`, a thin FireTask around
  :func:`~pqdflow.workflows.study.steps.execute_step`.
* :mod:`~pqdflow.workflows.fireworks.builder`: :func:`build_workflow` from the schedule.
* :mod:`~pqdflow.workflows.fireworks.launchpad`: the embedded single-file launchpad, YAML
  launchpads with credentials from the environment, and :func:`run_plan_on_launchpad`.
"""
