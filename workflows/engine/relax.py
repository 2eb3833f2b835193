"""Structure relaxation with any ASE calculator, ending in a :class:`RelaxDoc`.

One function, :func:`relax_structure`: relax ions (and the cell for bulk, through ASE's
``FrechetCellFilter``) until the largest per-atom force norm is below ``fmax`` (default
0.02 eV/Å, the paper's EDIFFG), respecting ``FixAtoms``; write the trajectory
(``relax.extxyz``) and final structure (``final.extxyz``) as it goes and, last and
atomically, ``result.json``. A folder whose ``result.json`` exists is finished: the runner
reads it instead of recomputing (restart).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.filters import FrechetCellFilter
from ase.io import write
from ase.optimize import BFGS, FIRE, LBFGS
from ase.optimize.optimize import Optimizer
from ase.optimize.precon import Exp, PreconLBFGS

from pqdflow.documents.results import RESULT_FILE, RelaxDoc
from pqdflow.errors import InputError
from pqdflow.provenance import provenance
from pqdflow.workflows.engine.calculators import CountingCalculator

__all__ = [
    "BFGS_ALPHA",
    "OPTIMIZERS",
    "PRECON_MIN_ATOMS",
    "RESULT_FILE",
    "SafePreconLBFGS",
    "make_optimizer",
    "max_force",
    "relax_structure",
    "write_frame",
]

OptimizerName = Literal["fire", "bfgs", "lbfgs", "precon"]
#: Initial Hessian of BFGS (eV/Å², ``alpha`` times the identity). ASE's default, 70, is
#: "conservative" (its docstring); the octahedral tilts of CsPbX3 are far softer, and BFGS then
#: spends its first hundreds of steps learning them. Measured with CHGNet (2026-12-01, BFGS,
#: same starts): the 82-atom NEB host to 0.005 eV/Å took 494 steps at 70, 312 at 20 and 354 at
#: 10; its V_Br initial endpoint 365 at 70, 275 at 35, 207 at 20; the 82-atom AnHI+TMSBr slab
#: with D3(BJ) to 0.02 eV/Å 387 at 70 and 232 at 20 (final energies within 3 meV, the spread
#: of the soft tilt basins). The step length stays capped at ``maxstep`` (0.2 Å).
BFGS_ALPHA: float = 20.0

#: Smallest cell ``"precon"`` preconditions (molecules and small bulk cells use BFGS).
PRECON_MIN_ATOMS: int = 8


class SafePreconLBFGS(PreconLBFGS):
    """ASE's preconditioned LBFGS, guarded against the two ways it fails on ML energies.

    After an Armijo line search that gives up, ASE resets the Hessian with a zero step; the
    next curvature pair then has ``s = 0`` and ``rho = 1 / (y . s)`` is infinite, the search
    direction becomes NaN and the line search never ends (seen on a 83-atom CHGNet NEB
    endpoint: the relaxation hung). Here a pair without positive, finite curvature is not
    stored, and a non-finite direction or a second zero step in a row raises
    ``RuntimeError`` (which :func:`relax_structure` answers by finishing with BFGS).
    """

    def update(self, r: Any, f: Any, r0: Any, f0: Any) -> None:
        """Store the curvature pair of the last step only when ``y . s`` is positive."""
        if not self._just_reset_hessian and r0 is not None and f0 is not None:
            s0 = np.ravel(r) - np.ravel(r0)
            y0 = np.ravel(f0) - np.ravel(f)
            curvature = float(np.dot(y0, s0))
            if not (math.isfinite(curvature) and curvature > 1e-12):
                return
        super().update(r, f, r0, f0)

    def line_search(self, r: Any, g: Any, e: Any, previously_reset_hessian: bool) -> None:
        """Refuse a non-finite search direction instead of searching along it."""
        if self.p is None or not np.all(np.isfinite(np.asarray(self.p, dtype=float))):
            raise RuntimeError("preconditioned LBFGS produced a non-finite search direction")
        super().line_search(r, g, e, previously_reset_hessian)
        if self.alpha_k == 0.0 and previously_reset_hessian:
            raise RuntimeError("preconditioned LBFGS makes no progress after a Hessian reset")


#: Optimisers accepted by name. ``"precon"``: ASE's preconditioned LBFGS with the
#: exponential preconditioner of Packwood et al., J. Chem. Phys. 144, 164109 (2016) (``Exp``,
#: A = 3, Armijo line search), built for stiff/soft mixtures such as organic ligands on soft
#: PbX6 tilts; a cell relaxation (or a cell of fewer than :data:`PRECON_MIN_ATOMS` atoms)
#: falls back to BFGS, recorded as ``optimizer_used``.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "fire": FIRE,
    "bfgs": BFGS,
    "lbfgs": LBFGS,
    "precon": SafePreconLBFGS,
}


@contextmanager
def _quiet_line_search() -> Iterator[None]:
    """Silence ASE's Armijo line-search log lines and its reset-Hessian warning."""
    log = logging.getLogger("ase.utils.linesearcharmijo")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Armijo linesearch failed")
            warnings.filterwarnings("ignore", message="The system is likely too small")
            yield
    finally:
        log.setLevel(level)


def make_optimizer(
    name: str, target: Any, *, relax_cell: bool = False, bfgs_alpha: float = BFGS_ALPHA
) -> tuple[Optimizer, str]:
    """Return the optimiser ``name`` on ``target`` and the name of the one actually used.

    ``"precon"`` on a cell relaxation or on fewer than :data:`PRECON_MIN_ATOMS` atoms is BFGS.
    Every BFGS starts from ``bfgs_alpha`` times the identity (:data:`BFGS_ALPHA`).
    """
    if name not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    if name == "precon":
        if relax_cell or len(target) < PRECON_MIN_ATOMS:
            return BFGS(target, logfile=None, alpha=bfgs_alpha), "bfgs"
        return SafePreconLBFGS(target, precon=Exp(A=3), use_armijo=True, logfile=None), "precon"
    if name == "bfgs":
        return BFGS(target, logfile=None, alpha=bfgs_alpha), name
    return OPTIMIZERS[name](target, logfile=None), name


def max_force(atoms: Atoms) -> float:
    """Largest per-atom force norm (eV/Å) with constraints applied (fixed atoms give 0)."""
    forces = atoms.get_forces()
    if len(forces) == 0:
        return 0.0
    return float(np.sqrt((forces**2).sum(axis=1)).max())


def write_frame(handle: IO[str], atoms: Atoms) -> None:
    """Append ``atoms`` with its current energy and forces to an open extxyz file."""
    frame = atoms.copy()
    # extxyz keeps scalar metadata only; the full metadata lives in result.json
    frame.info = {k: v for k, v in atoms.info.items() if isinstance(v, str | int | float | bool)}
    calc = atoms.calc
    if calc is not None and "energy" in calc.results:
        results: dict[str, Any] = {"energy": calc.results["energy"]}
        if "forces" in calc.results:
            results["forces"] = np.array(calc.results["forces"])
        frame.calc = SinglePointCalculator(frame, **results)
    write(handle, frame, format="extxyz")
    handle.flush()


def relax_structure(
    atoms: Atoms,
    calculator: Calculator,
    directory: str | Path,
    *,
    name: str,
    backend: str,
    kind: str = "slab",
    role: str = "model",
    formula_units: int = 1,
    fmax: float = 0.02,
    relax_cell: bool = False,
    max_steps: int = 1000,
    optimizer: OptimizerName = "bfgs",
    bfgs_alpha: float = BFGS_ALPHA,
    settings: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> RelaxDoc:
    """Relax ``atoms`` with ``calculator`` in ``directory``; return (and write) a RelaxDoc.

    Parameters
    ----------
    atoms
        Starting structure; not modified (a copy is relaxed). ``FixAtoms`` is respected.
    calculator
        Any ASE calculator; it is wrapped to count evaluations.
    directory
        Calculation folder (created). Receives ``relax.extxyz``, ``final.extxyz`` and,
        last, ``result.json``.
    name, backend, kind, role
        Recorded in the document.
    formula_units
        Formula units in the cell (for ``energy_per_formula_unit``).
    fmax
        Convergence criterion: largest per-atom force norm (eV/Å); with ``relax_cell``
        the stress enters through the filter's generalised forces.
    relax_cell
        Relax the cell too (``FrechetCellFilter``); periodic structures only.
    max_steps
        Optimiser step limit; reaching it gives ``converged=False`` (not an error).
    optimizer
        ``"bfgs"`` (default), ``"lbfgs"``, ``"fire"`` or ``"precon"`` (see :data:`OPTIMIZERS`).
    bfgs_alpha
        Initial Hessian of BFGS in eV/Å² (:data:`BFGS_ALPHA`).
    settings, meta
        Recorded in the document.

    Raises
    ------
    InputError
        Unknown optimiser, non-positive ``fmax``/``bfgs_alpha``/``max_steps``/``formula_units``, or
        ``relax_cell`` on a structure that is not periodic in 3D; raised before any file
        is written.
    """
    if optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
    if not (math.isfinite(fmax) and fmax > 0):
        raise InputError(f"fmax must be a positive number of eV/Å, got {fmax!r}")
    if not (math.isfinite(bfgs_alpha) and bfgs_alpha > 0):
        raise InputError(f"bfgs_alpha must be a positive number of eV/Å², got {bfgs_alpha!r}")
    if max_steps < 1:
        raise InputError(f"max_steps must be >= 1, got {max_steps}")
    if formula_units < 1:
        raise InputError(f"formula_units must be >= 1, got {formula_units}")
    if relax_cell and not (atoms.pbc.all() and atoms.cell.rank == 3):
        raise InputError(f"relax_cell=True needs a 3D-periodic structure; {name!r} is not")
    if len(atoms) == 0:
        raise InputError(f"structure {name!r} has no atoms")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    work = atoms.copy()
    fallback = ""
    counted = CountingCalculator(calculator, stress=relax_cell)
    work.calc = counted
    target: Any = FrechetCellFilter(work) if relax_cell else work
    traj_path = directory / "relax.extxyz"
    with traj_path.open("w") as handle:
        opt, used = make_optimizer(optimizer, target, relax_cell=relax_cell, bfgs_alpha=bfgs_alpha)
        opt.attach(lambda: write_frame(handle, work), interval=1)
        try:
            with _quiet_line_search():
                converged = bool(opt.run(fmax=fmax, steps=max_steps))
            n_steps = int(opt.nsteps)
        except RuntimeError as exc:
            if used != "precon":
                raise
            # the Armijo line search gives up where ML energies are too noisy to decrease
            # (near convergence): BFGS finishes from where it stopped, within the step limit
            n_steps = int(opt.nsteps)
            used = "precon+bfgs"
            rest = BFGS(target, logfile=None, alpha=bfgs_alpha)
            rest.attach(lambda: write_frame(handle, work), interval=1)
            converged = bool(rest.run(fmax=fmax, steps=max(max_steps - n_steps, 1)))
            n_steps += int(rest.nsteps)
            fallback = str(exc)
    energy = float(work.get_potential_energy())
    final_path = directory / "final.extxyz"
    tmp_final = directory / ".final.extxyz.tmp"
    with tmp_final.open("w") as handle:
        write_frame(handle, work)
    tmp_final.replace(final_path)
    doc = RelaxDoc(
        name=name,
        backend=backend,
        kind=kind,
        role=role,
        energy=energy,
        formula_units=int(formula_units),
        energy_per_formula_unit=energy / formula_units,
        fmax=max_force(work),
        converged=converged,
        n_steps=n_steps,
        n_force_calls=counted.n_calls,
        formula=work.get_chemical_formula(),
        cell=np.array(work.cell).tolist(),
        directory=str(directory.resolve()),
        settings={
            "fmax": fmax,
            "relax_cell": relax_cell,
            "max_steps": max_steps,
            "optimizer": optimizer,
            "optimizer_used": used,
            "bfgs_alpha": bfgs_alpha,
            **({"optimizer_fallback": fallback} if fallback else {}),
            **dict(settings or {}),
        },
        meta=dict(meta or {}),
        provenance=provenance(backend=backend, calculator=type(calculator).__name__),
    )
    doc.write(directory / RESULT_FILE)
    return doc
