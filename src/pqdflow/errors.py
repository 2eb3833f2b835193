"""Typed errors of pqdflow.

Every error the package raises on purpose derives from :class:`PqdflowError`, so a script
can catch them all at once. Errors about bad user input derive from :class:`InputError`
(also a ``ValueError``) and are raised *before* anything is written to disk. Messages name
the offending value and what is allowed instead.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BackendError",
    "BackendNotInstalledError",
    "CalculationFailed",
    "ClashError",
    "CompositionError",
    "ConvergenceError",
    "EndpointError",
    "EndpointWarning",
    "GeometryError",
    "InputError",
    "InputSetError",
    "LaunchpadConnectionError",
    "LaunchpadLockedError",
    "OverwriteError",
    "ParseError",
    "PqdflowError",
    "RunInterrupted",
    "SameStateError",
    "StudyError",
    "UnbalancedReactionError",
    "UnknownLigandError",
    "UnknownSiteError",
    "UnknownTerminationError",
    "VacancyCascadeError",
    "VibrationalError",
]


class PqdflowError(Exception):
    """Base class of every error raised by pqdflow."""


class InputError(PqdflowError, ValueError):
    """Invalid user input; raised before any file is written."""


class CompositionError(InputError):
    """A halide composition x that is outside [0, 3] or not realisable on the cell."""


class UnknownLigandError(InputError):
    """A ligand name that is not in the ligand library."""


class UnknownSiteError(InputError):
    """An adsorption site name that the slab does not offer."""


class UnknownTerminationError(InputError):
    """A slab termination other than the supported ones."""


class GeometryError(InputError):
    """Impossible cell geometry: too little vacuum, too few layers, bad supercell."""


class ClashError(InputError):
    """A placement puts atoms closer than the allowed minimum distance."""


class EndpointError(InputError):
    """NEB endpoints whose atoms do not correspond one to one."""


class SameStateError(EndpointError):
    """NEB endpoints that are one state: no atom moves between them.

    After relaxation this means the planned final state is no minimum (the hopping atom
    went back): the vacancy cannot sit at the hopping atom's site, and the hop is blocked.
    """


class VacancyCascadeError(EndpointError):
    """NEB endpoints where another framework atom took the hopping atom's starting site.

    The planned final state (the vacancy at the hopping atom's site) is no minimum: while
    the final endpoint relaxed, a second atom hopped into that site and the vacancy moved on.
    A band between the endpoints crosses two hops. ``index``, ``element`` and
    ``distance_A`` name the second atom and how close it ends to the site.
    """

    def __init__(self, message: str, *, index: int, element: str, distance_A: float) -> None:
        super().__init__(message)
        self.index = index
        self.element = element
        self.distance_A = distance_A

    def as_dict(self) -> dict[str, int | str | float]:
        """Return the record a band keeps (``meta["endpoint_check"]["cascade"]``)."""
        return {"index": self.index, "element": self.element, "distance_A": self.distance_A}


class StudyError(InputError):
    """A study file that does not validate (unknown key, wrong type, empty study)."""


class UnbalancedReactionError(StudyError):
    """A reaction whose atoms or formal charges differ between reactants and products."""


class InputSetError(InputError):
    """A VASP input-set override or preset that is invalid."""


class OverwriteError(PqdflowError, FileExistsError):
    """Refusing to overwrite a folder that already holds calculation outputs."""


class ParseError(PqdflowError):
    """A calculation output that cannot be parsed.

    Parameters
    ----------
    path
        The file or folder that failed to parse.
    reason
        Why it failed, in words.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class BackendError(PqdflowError):
    """An unknown or misconfigured calculation backend."""


class BackendNotInstalledError(BackendError, ImportError):
    """An optional backend whose package is not installed."""


class CalculationFailed(PqdflowError):
    """A calculation that ran but failed."""


class ConvergenceError(CalculationFailed):
    """A calculation that did not converge where convergence is required."""


class LaunchpadLockedError(PqdflowError):
    """The embedded launchpad file is held by another launcher."""


class RunInterrupted(PqdflowError):
    """A study run stopped by SIGINT (Ctrl-C) or SIGTERM; the same command resumes it.

    Attributes
    ----------
    signum
        The signal that stopped the run (``signal.SIGINT`` or ``signal.SIGTERM``); the
        command line exits with ``128 + signum`` (130 for Ctrl-C).
    """

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum


class VibrationalError(PqdflowError):
    """Vibrational analysis that cannot be performed on the given input."""


class EndpointWarning(UserWarning):
    """NEB endpoints differ by more than the hop even after the final was rebuilt.

    The band is still run and its document flagged (``meta["endpoint_check"]``): the
    barrier then includes that rearrangement and must be read with care.
    """


class LaunchpadConnectionError(PqdflowError, ConnectionError):
    """A MongoDB launchpad that cannot be reached or refuses its credentials."""
