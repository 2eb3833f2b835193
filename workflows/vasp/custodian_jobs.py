"""VASP under custodian: jobs, the handler set, validators, and pqdflow's per-image NEB checks.

Relaxations of slabs, adsorbed surfaces, molecules and bulk run as one custodian
``VaspJob``; NEB bands as a ``VaspNEBJob`` with its standard output in ``vasp.out`` (where
``VaspErrorHandler`` reads it) and automatic NPAR off (custodian's rule counts every core of
the job, not the cores of one image). No custodian handler reads the image OUTCARs of a
band, so :class:`NebImagesValidator` and :class:`NebImagesUnconvergedHandler` do.

Commands are argument lists, never shell strings: a command given as a string (as in a
``my_fworker.yaml`` env) is split with :func:`shlex.split`.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custodian import Custodian
from custodian.custodian import CustodianError, ErrorHandler, Validator
from custodian.vasp.handlers import (
    FrozenJobErrorHandler,
    NonConvergingErrorHandler,
    PositiveEnergyErrorHandler,
    PotimErrorHandler,
    UnconvergedErrorHandler,
    VaspErrorHandler,
    WalltimeHandler,
)
from custodian.vasp.jobs import VaspJob, VaspNEBJob
from custodian.vasp.validators import VaspFilesValidator, VasprunXMLValidator

from pqdflow.errors import BackendError, CalculationFailed, InputError

__all__ = [
    "STDOUT_FILE",
    "CustodianSettings",
    "NebImagesUnconvergedHandler",
    "NebImagesValidator",
    "image_dirs",
    "neb_handlers",
    "neb_validators",
    "parse_command",
    "relax_handlers",
    "relax_validators",
    "run_vasp_custodian",
    "vasp_job",
    "vasp_neb_job",
]

#: File VASP's standard output goes to (read by ``VaspErrorHandler`` and ``FrozenJobErrorHandler``).
STDOUT_FILE = "vasp.out"
#: File VASP's standard error goes to.
STDERR_FILE = "std_err.txt"

_FINISHED = "General timing and accounting"
_CONVERGED = "reached required accuracy"
_ENERGY = "energy  without entropy"


@dataclass(frozen=True)
class CustodianSettings:
    """How custodian supervises a run.

    Attributes
    ----------
    max_errors
        Corrections allowed per run before custodian gives up.
    polling_time_step
        Seconds between checks of the running process (custodian's default is 10 s).
    monitor_freq
        Polls between two runs of the monitoring handlers.
    wall_time
        Wall time of the allocation in s; ``None`` lets custodian read ``PBS_WALLTIME`` /
        ``SBATCH_TIMELIMIT`` (without any, no ``WalltimeHandler`` is installed, since it
        would do nothing). Note: custodian's ``WalltimeHandler`` records its start time in
        the process environment (``CUSTODIAN_WALLTIME_START``) so that later jobs of the
        same allocation count from the same start; pqdflow leaves that as custodian does.
    frozen_timeout
        Seconds without output after which a run counts as frozen.
    neb_max_restarts
        Times an unconverged band is restarted from its current images.
    """

    max_errors: int = 5
    polling_time_step: float = 10.0
    monitor_freq: int = 30
    wall_time: float | None = None
    frozen_timeout: float = 21_600.0
    neb_max_restarts: int = 2

    def __post_init__(self) -> None:
        if self.max_errors < 1:
            raise InputError(f"max_errors must be >= 1, got {self.max_errors}")
        if self.polling_time_step <= 0:
            raise InputError(f"polling_time_step must be > 0 s, got {self.polling_time_step}")
        if self.monitor_freq < 1:
            raise InputError(f"monitor_freq must be >= 1, got {self.monitor_freq}")


def parse_command(cmd: str | Sequence[str] | None, *, what: str = "vasp_cmd") -> list[str]:
    """Return a command as an argument list (strings are split with :func:`shlex.split`).

    Raises
    ------
    BackendError
        If the command is missing or empty.
    """
    if cmd is None:
        raise BackendError(
            f"{what} is not set; give it in the worker's my_fworker.yaml env "
            f"(env: {{{what}: 'srun vasp_std'}}) or pass it explicitly"
        )
    args = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
    if not args or not all(args):
        raise BackendError(f"{what} is empty ({cmd!r}); give a command such as 'srun vasp_std'")
    return args


def _wall_time_known(settings: CustodianSettings) -> bool:
    return settings.wall_time is not None or any(
        k in os.environ for k in ("PBS_WALLTIME", "SBATCH_TIMELIMIT")
    )


def relax_handlers(settings: CustodianSettings | None = None) -> list[ErrorHandler]:
    """Return the handlers for relaxations of slabs, adsorbed surfaces, molecules and bulk.

    VASP error messages, unconverged runs, SCF that never converges, a POTIM too large
    (energy jumps), positive total energies, frozen runs and, where a wall time is known,
    the wall time.
    """
    settings = settings or CustodianSettings()
    handlers: list[ErrorHandler] = [
        VaspErrorHandler(output_filename=STDOUT_FILE),
        UnconvergedErrorHandler(),
        NonConvergingErrorHandler(),
        PotimErrorHandler(),
        PositiveEnergyErrorHandler(),
        FrozenJobErrorHandler(output_filename=STDOUT_FILE, timeout=int(settings.frozen_timeout)),
    ]
    if _wall_time_known(settings):
        handlers.append(WalltimeHandler(wall_time=settings.wall_time))
    return handlers


def relax_validators() -> list[Validator]:
    """Return the validators of a relaxation: a readable vasprun.xml and the usual outputs."""
    return [
        VasprunXMLValidator(output_file=STDOUT_FILE, stderr_file=STDERR_FILE),
        VaspFilesValidator(),
    ]


def image_dirs(directory: str | Path) -> list[Path]:
    """Return the intermediate image folders (``01`` .. ``NN-1``) of an NEB folder."""
    directory = Path(directory)
    numbered = sorted(
        (p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    return numbered[1:-1]


def _outcar_text(image: Path) -> str | None:
    outcar = image / "OUTCAR"
    if not outcar.is_file():
        return None
    return outcar.read_text(encoding="utf-8", errors="replace")


class NebImagesValidator(Validator):
    """Fails an NEB run unless every intermediate image finished with an energy.

    An image passes when its OUTCAR exists, holds at least one completed ionic step
    (``energy  without entropy``) and ends with VASP's timing block.
    """

    def check(self, directory: str = "./") -> bool:
        """Return True (invalid) if any image is missing, unfinished or has no energy."""
        images = image_dirs(directory)
        if not images:
            return True
        for image in images:
            text = _outcar_text(image)
            if text is None or _FINISHED not in text or _ENERGY not in text:
                return True
        return False


class NebImagesUnconvergedHandler(ErrorHandler):
    """Restart a band that finished without every image reaching the force criterion.

    ``check`` is True when every image finished but at least one OUTCAR lacks VASP's
    "reached required accuracy". ``correct`` backs up each image's POSCAR and continues from
    its CONTCAR; after ``max_num_corrections`` restarts custodian stops trying.
    """

    is_monitor = False
    raises_runtime_error = False

    def __init__(self, max_restarts: int = 2) -> None:
        self.max_restarts = max_restarts
        self.max_num_corrections = max_restarts

    def check(self, directory: str = "./") -> bool:
        """Return True if the band finished but is not converged."""
        images = image_dirs(directory)
        if not images:
            return False
        texts = [_outcar_text(image) for image in images]
        if any(t is None or _FINISHED not in t for t in texts):
            return False  # not finished: the validator or another handler deals with it
        return any(_CONVERGED not in t for t in texts if t is not None)

    def correct(self, directory: str = "./") -> dict[str, Any]:
        """Continue every image from its CONTCAR; return custodian's correction record."""
        actions: list[dict[str, Any]] = []
        for image in image_dirs(directory):
            contcar = image / "CONTCAR"
            if not contcar.is_file() or contcar.stat().st_size == 0:
                return {"errors": ["neb_unconverged"], "actions": None}
            n = 1
            while (image / f"POSCAR.restart{n}").exists():
                n += 1
            shutil.copy2(image / "POSCAR", image / f"POSCAR.restart{n}")
            shutil.copy2(contcar, image / "POSCAR")
            actions.append(
                {"file": f"{image.name}/CONTCAR", "action": {"_file_copy": {"dest": "POSCAR"}}}
            )
        return {"errors": ["neb_unconverged"], "actions": actions}


def neb_handlers(settings: CustodianSettings | None = None) -> list[ErrorHandler]:
    """Return the handlers of a VTST NEB band.

    VASP errors in ``vasp.out`` (with VTST fixes), frozen runs, the wall time where known,
    and the per-image convergence restart.
    """
    settings = settings or CustodianSettings()
    handlers: list[ErrorHandler] = [
        VaspErrorHandler(output_filename=STDOUT_FILE, vtst_fixes=True),
        FrozenJobErrorHandler(output_filename=STDOUT_FILE, timeout=int(settings.frozen_timeout)),
        NebImagesUnconvergedHandler(max_restarts=settings.neb_max_restarts),
    ]
    if _wall_time_known(settings):
        handlers.append(WalltimeHandler(wall_time=settings.wall_time))
    return handlers


def neb_validators() -> list[Validator]:
    """Return the validators of a band.

    Per-image checks only: the top-level vasprun.xml of a band is not reliable (several
    images write to it at once).
    """
    return [NebImagesValidator()]


def vasp_job(vasp_cmd: str | Sequence[str]) -> VaspJob:
    """Build a single-structure VASP job (stdout in ``vasp.out``, no auto NPAR/Gamma swap).

    The Gamma-only command for molecules is chosen by the caller (see
    :func:`run_vasp_custodian`), not guessed from the executable name.
    """
    return VaspJob(
        parse_command(vasp_cmd),
        output_file=STDOUT_FILE,
        stderr_file=STDERR_FILE,
        auto_npar=False,
        auto_gamma=False,
    )


def vasp_neb_job(vasp_cmd: str | Sequence[str], *, backup: bool = True) -> VaspNEBJob:
    """Build an NEB job: stdout in ``vasp.out`` (where ``VaspErrorHandler`` looks), NPAR as set."""
    # custodian's NEB backup copies INCAR, KPOINTS and POTCAR unconditionally, so it needs a
    # POTCAR; run_vasp_custodian turns it off for folders without one (POTCAR.spec only).
    return VaspNEBJob(
        parse_command(vasp_cmd),
        output_file=STDOUT_FILE,
        stderr_file=STDERR_FILE,
        auto_npar=False,
        auto_gamma=False,
        backup=backup,
    )


def run_vasp_custodian(
    directory: str | Path,
    *,
    vasp_cmd: str | Sequence[str],
    neb: bool = False,
    settings: CustodianSettings | None = None,
) -> list[dict[str, Any]]:
    """Run VASP in ``directory`` under custodian; return custodian's run log.

    Parameters
    ----------
    directory
        A folder with complete VASP inputs (image folders ``00``..``NN`` for an NEB).
    vasp_cmd
        The command (list, or a string split with :func:`shlex.split`). Pass the Gamma-only
        build for molecules.
    neb
        Run as an NEB band (``VaspNEBJob``, NEB handlers and validators).
    settings
        Custodian settings (polling, error limits, wall time).

    Raises
    ------
    CalculationFailed
        If custodian gives up (validation failed, unrecoverable error, too many errors).
    """
    settings = settings or CustodianSettings()
    directory = Path(directory).resolve()
    if not (directory / "INCAR").is_file():
        raise InputError(f"{directory} holds no INCAR; write the inputs before running VASP")
    if neb:
        job: VaspJob = vasp_neb_job(vasp_cmd, backup=(directory / "POTCAR").is_file())
    else:
        job = vasp_job(vasp_cmd)
    handlers = neb_handlers(settings) if neb else relax_handlers(settings)
    validators = neb_validators() if neb else relax_validators()
    custodian = Custodian(
        handlers,
        [job],
        validators=validators,
        max_errors=settings.max_errors,
        polling_time_step=settings.polling_time_step,
        monitor_freq=settings.monitor_freq,
        directory=str(directory),
    )
    try:
        return list(custodian.run())
    except CustodianError as exc:
        raise CalculationFailed(f"VASP under custodian failed in {directory}: {exc}") from exc
