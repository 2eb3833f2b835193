"""GPAW: a real PBE/PAW plane-wave DFT calculator with the VASP path's settings.

GPAW (https://gpaw.readthedocs.io) is a projector-augmented-wave code with an ASE
calculator, installed here by ``make setup-gpaw`` (``.ci/install_gpaw.sh``; a plain
``pip install gpaw`` does not build on these machines). This module gives:

* :func:`gpaw_setup_path`: where the PAW setups are (``GPAW_SETUP_PATH``, else Debian's
  ``/usr/share/gpaw-setups``, else the ``gpaw-data`` wheel), never downloaded at run time;
  a missing folder or element is a :class:`~pqdflow.errors.BackendNotInstalledError` that
  names the install step.
* :class:`GpawSettings`: PBE, plane waves at the paper's 400 eV, SCF to 1e-5 eV (total
  energy), Gaussian smearing and k-points from the same preset and density rule as the VASP
  input sets (Gamma only for molecules, 1 along the vacuum axis for slabs).
* :func:`gpaw_parameters` (pure: the keyword dict) and :func:`gpaw_calculator` (the ASE
  calculator), with the cell's net charge and optional initial magnetic moments.
* :func:`gpaw_esp_grid`: the electron density and the chemist's electrostatic potential of
  a finished calculation, as an :class:`~pqdflow.analysis.esp.EspGrid`.

Charged cells (a V_Br+ vacancy: ``charge=+1``) carry a uniform compensating background, as
VASP's NELECT does. Spin: ``magmoms=None`` is a spin-paired calculation (ISPIN 1, the VASP
presets' choice for the closed-shell cells of this package); an odd electron count then is an
error, and ``magmoms`` (one initial moment per atom, μB) switches spin polarisation on.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from pqdflow.analysis.esp import EspGrid, esp_grid_from_electron_potential
from pqdflow.errors import BackendError, BackendNotInstalledError, InputError
from pqdflow.workflows.vasp.inputsets import KIND_PRESETS, get_input_set, load_preset

__all__ = [
    "DEBIAN_SETUP_PATH",
    "GPAW_INSTALL_HINT",
    "GpawKind",
    "GpawSettings",
    "check_setups",
    "gpaw_calculator",
    "gpaw_calculator_factory",
    "gpaw_esp",
    "gpaw_esp_grid",
    "gpaw_parameters",
    "gpaw_setup_path",
    "import_gpaw",
    "molecule_in_cubic_box",
]

#: How to install GPAW and its PAW setups here (Debian packages + a configured build).
GPAW_INSTALL_HINT = (
    "run `make setup-gpaw` (bash .ci/install_gpaw.sh .venv: apt-get install gpaw-data "
    "libxc-dev libopenblas-dev libfftw3-dev, then GPAW_CONFIG=siteconfig.py pip install gpaw)"
)
#: Debian's gpaw-data package puts the PAW setups here.
DEBIAN_SETUP_PATH = Path("/usr/share/gpaw-setups")

GpawKind = Literal["bulk", "slab", "adsorbed", "molecule"]
_KINDS: tuple[str, ...] = ("bulk", "slab", "adsorbed", "molecule")


def import_gpaw() -> Any:
    """Import and return the ``gpaw`` module.

    Raises
    ------
    BackendNotInstalledError
        If GPAW (or its C extension) cannot be imported; the message names the install step.
    """
    try:
        return importlib.import_module("gpaw")
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"the 'gpaw' backend needs GPAW, which is not importable ({exc}); {GPAW_INSTALL_HINT}"
        ) from exc


def _has_setups(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.PBE*"))


def _pip_setup_path() -> Path | None:
    try:
        gpaw_data = importlib.import_module("gpaw_data")
    except ImportError:
        return None
    return Path(gpaw_data.datapath())


def gpaw_setup_path(
    environ: Mapping[str, str] | None = None,
    *,
    search: Sequence[Path] | None = None,
) -> Path:
    """Return the folder of GPAW's PAW setups; nothing is downloaded.

    Parameters
    ----------
    environ
        Environment to read ``GPAW_SETUP_PATH`` from (default :data:`os.environ`). A set
        variable wins (its first folder holding ``*.PBE*`` setups); if it names no such
        folder that is an error, not a silent fallback.
    search
        Fallback folders in order; default Debian's :data:`DEBIAN_SETUP_PATH`, then the
        setups shipped by the ``gpaw-data`` wheel (when installed).

    Raises
    ------
    BackendNotInstalledError
        If no folder holds PAW setups; the message names the install step.
    """
    env = os.environ if environ is None else environ
    value = env.get("GPAW_SETUP_PATH")
    if value:
        for part in value.split(os.pathsep):
            if part and _has_setups(Path(part)):
                return Path(part)
        raise BackendNotInstalledError(
            f"GPAW_SETUP_PATH={value!r} holds no PAW setups (*.PBE[.gz]); point it at a "
            f"folder of setups, e.g. {DEBIAN_SETUP_PATH}, or unset it; {GPAW_INSTALL_HINT}"
        )
    if search is None:
        pip_path = _pip_setup_path()
        search = [DEBIAN_SETUP_PATH] + ([pip_path] if pip_path is not None else [])
    for folder in search:
        if _has_setups(Path(folder)):
            return Path(folder)
    tried = ", ".join(str(f) for f in search) or "(none)"
    raise BackendNotInstalledError(
        f"no GPAW PAW setups found (GPAW_SETUP_PATH unset; looked in {tried}); {GPAW_INSTALL_HINT}"
    )


def check_setups(folder: Path, symbols: Sequence[str], xc: str = "PBE") -> dict[str, Path]:
    """Return the setup file of each element in ``symbols`` found in ``folder``.

    Raises
    ------
    BackendNotInstalledError
        Listing the elements without an ``<El>.<xc>[.gz]`` file in ``folder``.
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    for symbol in sorted(set(symbols)):
        files = [folder / f"{symbol}.{xc}", folder / f"{symbol}.{xc}.gz"]
        hit = next((f for f in files if f.is_file()), None)
        if hit is None:
            missing.append(symbol)
        else:
            found[symbol] = hit
    if missing:
        raise BackendNotInstalledError(
            f"no {xc} PAW setup for {missing} in {folder}; {GPAW_INSTALL_HINT}"
        )
    return found


@dataclass(frozen=True)
class GpawSettings:
    """GPAW settings matching the paper's VASP Methods (energies in eV).

    Attributes
    ----------
    ecut
        Plane-wave cutoff (eV); 400 as ENCUT in the paper.
    energy_tol
        SCF stops when the total energy varies by less than this over the last 3 steps
        (eV, absolute, as VASP's EDIFF = 1e-5 eV; GPAW's default is per valence electron).
    xc
        Exchange-correlation functional (PAW setups of this name must exist).
    mode
        Basis: ``"pw"`` (plane waves) only.
    kpoint_density
        k-points per 1/Å of reciprocal-vector length (VASP's R_k); ``None`` uses the VASP
        preset's (25 Å). The grid comes from the VASP rule for the calculation kind.
    kpts
        Explicit Gamma-centred grid, overriding the density rule (e.g. ``(1, 1, 1)``).
    smearing_width
        Gaussian smearing width (eV); ``None`` uses the preset's SIGMA for the kind
        (0.05, molecules 0.01).
    maxiter
        SCF step limit (VASP's NELM of the presets: 200).
    """

    ecut: float = 400.0
    energy_tol: float = 1e-5
    xc: str = "PBE"
    mode: Literal["pw"] = "pw"
    kpoint_density: float | None = None
    kpts: tuple[int, int, int] | None = None
    smearing_width: float | None = None
    maxiter: int = 200

    def __post_init__(self) -> None:
        for name in ("ecut", "energy_tol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise BackendError(f"GpawSettings.{name} = {value!r}; must be a positive number")
        if self.mode != "pw":
            raise BackendError(f"GpawSettings.mode = {self.mode!r}; allowed: 'pw'")
        if self.smearing_width is not None and not self.smearing_width >= 0:
            raise BackendError(
                f"GpawSettings.smearing_width = {self.smearing_width!r}; must be >= 0 eV"
            )
        if self.kpts is not None and (
            len(self.kpts) != 3 or any(not isinstance(n, int) or n < 1 for n in self.kpts)
        ):
            raise BackendError(f"GpawSettings.kpts = {self.kpts!r}; must be 3 integers >= 1")
        if not isinstance(self.maxiter, int) or self.maxiter < 1:
            raise BackendError(f"GpawSettings.maxiter = {self.maxiter!r}; must be >= 1")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise InputError(f"calculation kind {kind!r} is unknown; allowed: {list(_KINDS)}")


def gpaw_parameters(
    atoms: Atoms,
    *,
    kind: GpawKind,
    charge: int = 0,
    magmoms: Sequence[float] | None = None,
    settings: GpawSettings | None = None,
) -> dict[str, Any]:
    """Return the GPAW keyword arguments for ``atoms`` (pure; no GPAW import, no disk).

    Parameters
    ----------
    atoms
        The structure (cell and elements set the k-point grid and the electron count).
    kind
        ``"bulk"``, ``"slab"``, ``"adsorbed"`` or ``"molecule"``: selects the VASP preset
        whose k-point rule and smearing apply.
    charge
        Net charge (e): +1 removes one electron (V_Br+), with a compensating background.
    magmoms
        Initial magnetic moments (μB), one per atom: a spin-polarised calculation. ``None``:
        spin-paired.
    settings
        :class:`GpawSettings` (default: the paper's).

    Raises
    ------
    InputError
        Unknown kind, a non-integer charge, ``magmoms`` of the wrong length, or an odd
        electron count in a spin-paired calculation (pass ``magmoms``).
    """
    _check_kind(kind)
    s = settings or GpawSettings()
    if isinstance(charge, bool) or not isinstance(charge, int | np.integer):
        raise InputError(f"charge = {charge!r}; must be an integer number of e")
    if magmoms is not None and len(magmoms) != len(atoms):
        raise InputError(f"magmoms has {len(magmoms)} values for {len(atoms)} atoms; give one each")
    if magmoms is None:
        # core shells are full, so the parity of all electrons is that of the valence ones
        if (int(atoms.get_atomic_numbers().sum()) - int(charge)) % 2:
            raise InputError(
                f"{atoms.get_chemical_formula()} with charge {int(charge):+d} has an odd "
                "number of electrons: a spin-paired calculation is wrong here; pass magmoms "
                "(initial moments in μB, one per atom) for a spin-polarised one"
            )
    preset = load_preset(KIND_PRESETS[kind])
    input_set = get_input_set(kind, kpoint_density=s.kpoint_density)
    grid = s.kpts or input_set.kpoint_grid(atoms)
    width = float(preset["INCAR"]["SIGMA"]) if s.smearing_width is None else s.smearing_width
    params: dict[str, Any] = {
        "mode": {"name": "pw", "ecut": float(s.ecut)},
        "xc": s.xc,
        "kpts": {"size": tuple(int(n) for n in grid), "gamma": True},
        # Methfessel-Paxton of order 0 is Gaussian smearing (VASP ISMEAR = 0)
        "occupations": {"name": "methfessel-paxton", "width": width, "order": 0},
        "convergence": {
            "energy": {"name": "energy", "tol": float(s.energy_tol), "relative": False}
        },
        "charge": int(charge),
        "maxiter": int(s.maxiter),
        "spinpol": magmoms is not None,
    }
    if magmoms is not None:
        params["magmoms"] = [float(m) for m in magmoms]
    return params


def gpaw_calculator(
    atoms: Atoms,
    *,
    kind: GpawKind,
    charge: int = 0,
    magmoms: Sequence[float] | None = None,
    txt: str | Path | None = None,
    settings: GpawSettings | None = None,
    environ: Mapping[str, str] | None = None,
) -> Calculator:
    """Return a GPAW ASE calculator for ``atoms`` (see :func:`gpaw_parameters`).

    The PAW setups come from :func:`gpaw_setup_path` (put first on GPAW's documented
    ``gpaw.setup_paths`` list) and are checked for every element before GPAW starts.

    Parameters
    ----------
    atoms, kind, charge, magmoms, settings
        As in :func:`gpaw_parameters`.
    txt
        GPAW's text log (``None``: no log).
    environ
        Environment for ``GPAW_SETUP_PATH`` (default :data:`os.environ`).

    Raises
    ------
    BackendNotInstalledError
        GPAW not importable, or no PAW setups (for some element).
    InputError
        See :func:`gpaw_parameters`.
    """
    params = gpaw_parameters(atoms, kind=kind, charge=charge, magmoms=magmoms, settings=settings)
    gpaw = import_gpaw()
    folder = gpaw_setup_path(environ)
    check_setups(folder, atoms.get_chemical_symbols(), params["xc"])
    if str(folder) not in [str(p) for p in gpaw.setup_paths[:1]]:
        gpaw.setup_paths.insert(0, str(folder))
    calc: Calculator = gpaw.GPAW(txt=None if txt is None else str(txt), **params)
    return calc


def gpaw_calculator_factory(
    atoms: Atoms,
    *,
    kind: GpawKind,
    charge: int = 0,
    magmoms: Sequence[float] | None = None,
    settings: GpawSettings | None = None,
) -> Callable[[], Calculator]:
    """Return a zero-argument factory of GPAW calculators for structures like ``atoms``.

    Parameters are checked now (not at the first image); each call builds a fresh
    calculator, as NEB images and the DFT check need.
    """
    gpaw_parameters(atoms, kind=kind, charge=charge, magmoms=magmoms, settings=settings)

    def factory() -> Calculator:
        return gpaw_calculator(atoms, kind=kind, charge=charge, magmoms=magmoms, settings=settings)

    return factory


def gpaw_esp_grid(calc: Any, atoms: Atoms, *, charge: int = 0) -> EspGrid:
    """Electron density and chemist's ESP of a finished GPAW calculation.

    GPAW's ``get_electrostatic_potential`` is the potential energy of an electron (eV,
    cell average zero); :func:`~pqdflow.analysis.esp.esp_grid_from_electron_potential`
    flips its sign and sets the vacuum level to zero. The density is the all-electron one on
    GPAW's coarse grid (``gridrefinement=1``, e/Å^3): interpolated to the fine grid it rings
    in the vacuum (measured on NH3 at 300 eV: down to -1.2e-3 e/bohr^3, as large as the 0.001
    isovalue, against -3e-7 on the coarse grid).

    Parameters
    ----------
    calc
        A GPAW calculator after a converged SCF.
    atoms
        The structure it was run on.
    charge
        Net charge of the molecule (e), for the vacuum level of a charged molecule.
    """
    potential = np.asarray(calc.get_electrostatic_potential())
    density = np.asarray(calc.get_all_electron_density(gridrefinement=1))
    return esp_grid_from_electron_potential(atoms, density, potential, charge=charge, source="gpaw")


def molecule_in_cubic_box(atoms: Atoms, vacuum: float = 6.0) -> Atoms:
    """Return a copy of a molecule centred in a periodic cube, ``vacuum`` Å on every side.

    The edge is the largest extent plus 2 x ``vacuum``, so that a sphere of half the edge
    around the molecule (the ESP's vacuum reference) stays in the vacuum. Atom order kept.

    Raises
    ------
    InputError
        If ``vacuum`` is below 4 Å (the 0.001 e/bohr^3 surface reaches ~3 Å out).
    """
    if not vacuum >= 4.0:
        raise InputError(f"vacuum = {vacuum!r} Å; must be >= 4 Å for an ESP map")
    out = atoms.copy()
    pos = out.get_positions()
    edge = float(np.max(pos.max(axis=0) - pos.min(axis=0))) + 2.0 * vacuum
    out.set_cell(np.eye(3) * edge)
    out.set_pbc(True)
    out.set_positions(pos - (pos.max(axis=0) + pos.min(axis=0)) / 2.0 + edge / 2.0)
    out.constraints = []
    return out


def gpaw_esp(
    atoms: Atoms,
    *,
    charge: int = 0,
    magmoms: Sequence[float] | None = None,
    settings: GpawSettings | None = None,
    txt: str | Path | None = None,
) -> tuple[EspGrid, float]:
    """Run a GPAW single point of a molecule in its box; return its ESP grid and energy (eV).

    ``atoms`` must already be in a box with enough vacuum (:func:`molecule_in_cubic_box`);
    the calculation kind is ``"molecule"`` (Gamma point, the molecule preset's smearing).
    """
    work = atoms.copy()
    work.calc = gpaw_calculator(
        work, kind="molecule", charge=charge, magmoms=magmoms, txt=txt, settings=settings
    )
    energy = float(work.get_potential_energy())
    return gpaw_esp_grid(work.calc, work, charge=charge), energy
