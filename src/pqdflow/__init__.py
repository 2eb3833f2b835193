"""pqdflow: DFT workflows for perovskite quantum-dot surface chemistry.

Builds CsPbBr3 / CsPbBr(x)I(3-x) surface models with ligands (OAc/OAm, AnHI, TMSBr),
writes VASP PBE/PAW inputs, runs the study with FireWorks + custodian or locally with an
ASE calculator, and parses binding energies and halide-migration barriers.

The public API, one import away (``from pqdflow import plan_study, run_study``):

=====================  =================================================================
``load_study``         read and validate a study YAML file
``example_study``      the paper's default study
``plan_study``         expand a study into calculations, reactions and NEB paths
``schedule``           the plan's steps in dependency order
``get_backend``        any backend by name (``mock``, ``chgnet``, ``vasp``, ...)
``run_study``          run a plan on this machine with a backend
``run_on_launchpad``   run a plan through FireWorks (embedded launchpad or MongoDB)
``build_workflow``     a plan as one FireWorks Workflow
``write_study_inputs`` the VASP dry run: every input folder, no POTCAR licence needed
``parse_calculation``  parse a finished (or dead) VASP calculation
``parse_neb``          parse a VASP NEB folder into barriers
``build_report``       read a whole study folder into binding energies and barriers
``write_report``       write a report's tables and plots
=====================  =================================================================

Subpackages
-----------
pqdflow.structures
    Pure structure builders (bulk, slabs, ligands, adsorption, vacancies, NEB endpoints).
pqdflow.documents
    The typed documents every layer shares: plan, manifest, results.
pqdflow.analysis
    Parsers, binding/activation energies, reports and plots, vibrational analysis.
pqdflow.workflows
    The study schedule, backends, VASP inputs, the local engine, FireWorks.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("pqdflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:  # names for type checkers; at run time __getattr__ imports them
    from pqdflow.analysis.neb_parse import parse_neb as parse_neb
    from pqdflow.analysis.report import build_report as build_report
    from pqdflow.analysis.report import write_report as write_report
    from pqdflow.analysis.vasp import parse_calculation as parse_calculation
    from pqdflow.workflows.backends import get_backend as get_backend
    from pqdflow.workflows.engine.runner import run_study as run_study
    from pqdflow.workflows.fireworks.builder import build_workflow as build_workflow
    from pqdflow.workflows.fireworks.launchpad import (  # noqa: F401
        run_plan_on_launchpad as run_on_launchpad,
    )
    from pqdflow.workflows.study import (
        example_study as example_study,
    )
    from pqdflow.workflows.study import (
        load_study as load_study,
    )
    from pqdflow.workflows.study import (
        plan_study as plan_study,
    )
    from pqdflow.workflows.study.scheduler import schedule as schedule
    from pqdflow.workflows.vasp.dryrun import write_study_inputs as write_study_inputs

#: Public name -> (module, attribute); imported on first use so ``import pqdflow`` stays light.
_API: dict[str, tuple[str, str]] = {
    "load_study": ("pqdflow.workflows.study", "load_study"),
    "example_study": ("pqdflow.workflows.study", "example_study"),
    "plan_study": ("pqdflow.workflows.study", "plan_study"),
    "schedule": ("pqdflow.workflows.study.scheduler", "schedule"),
    "get_backend": ("pqdflow.workflows.backends", "get_backend"),
    "run_study": ("pqdflow.workflows.engine.runner", "run_study"),
    "run_on_launchpad": ("pqdflow.workflows.fireworks.launchpad", "run_plan_on_launchpad"),
    "build_workflow": ("pqdflow.workflows.fireworks.builder", "build_workflow"),
    "write_study_inputs": ("pqdflow.workflows.vasp.dryrun", "write_study_inputs"),
    "parse_calculation": ("pqdflow.analysis.vasp", "parse_calculation"),
    "parse_neb": ("pqdflow.analysis.neb_parse", "parse_neb"),
    "build_report": ("pqdflow.analysis.report", "build_report"),
    "write_report": ("pqdflow.analysis.report", "write_report"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Import a public API name on first use (PEP 562)."""
    if name in _API:
        module, attribute = _API[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pqdflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
