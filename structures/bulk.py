"""Cubic CsPbX3 bulk cells: CsPbBr3, CsPbI3 and mixed CsPbBr(x)I(3-x).

The cubic (Pm-3m) perovskite cell used throughout pqdflow has Pb at the origin, the three
halides at the face centres of the Pb cube edges ((a/2, 0, 0), (0, a/2, 0), (0, 0, a/2)) and
Cs at the body centre (a/2, a/2, a/2). Stacked along z this gives alternating PbX2 planes
(z = 0) and CsX planes (z = a/2), which is what the (001) slab builder cuts.

Composition convention (as in the paper's CsPbBr(x)I(3-x)): ``x`` is the number of Br per
formula unit, so a cell of ``n`` formula units holds ``(3 - x) * n`` iodide ions; that number
must be an integer (see :func:`allowed_x`).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from ase import Atoms

from pqdflow.errors import CompositionError, GeometryError, InputError

__all__ = [
    "CSPBBR3_A",
    "CSPBI3_A",
    "HALIDES",
    "allowed_x",
    "build_bulk",
    "build_mixed_halide",
    "check_x",
    "vegard_a",
]

#: Cubic CsPbBr3 lattice constant (Å): high-temperature cubic Pm-3m phase, single-crystal
#: X-ray diffraction, C. C. Stoumpos et al., Cryst. Growth Des. 13, 2722 (2013).
CSPBBR3_A: float = 5.874

#: Cubic CsPbI3 lattice constant (Å): high-temperature cubic Pm-3m phase (~634 K), powder
#: synchrotron diffraction, D. M. Trots and S. V. Myagkota, J. Phys. Chem. Solids 69, 2520
#: (2008).
CSPBI3_A: float = 6.289

#: Halide species the builders know, with their cubic lattice constant (Å).
HALIDES: dict[str, float] = {"Br": CSPBBR3_A, "I": CSPBI3_A}

_X_TOL = 1e-9


def check_x(x: float) -> float:
    """Return ``x`` as a float if it is a Br count per formula unit in [0, 3].

    Raises
    ------
    CompositionError
        If ``x`` is not a finite number in [0, 3].
    """
    try:
        value = float(x)
    except (TypeError, ValueError) as exc:
        raise CompositionError(f"x={x!r} is not a number; x must be in [0, 3]") from exc
    if not np.isfinite(value) or value < -_X_TOL or value > 3.0 + _X_TOL:
        raise CompositionError(
            f"x={x!r} is outside [0, 3]; x is the Br count per formula unit of "
            "CsPbBr(x)I(3-x), so 0 <= x <= 3"
        )
    return min(max(value, 0.0), 3.0)


def vegard_a(x: float) -> float:
    """Cubic lattice constant of CsPbBr(x)I(3-x) by Vegard's law, in Å.

    ``a(x) = (x / 3) * a(CsPbBr3) + (1 - x / 3) * a(CsPbI3)`` with the cited end members
    :data:`CSPBBR3_A` and :data:`CSPBI3_A`.

    Parameters
    ----------
    x
        Br count per formula unit, in [0, 3].
    """
    value = check_x(x)
    return value / 3.0 * CSPBBR3_A + (1.0 - value / 3.0) * CSPBI3_A


def _check_supercell(supercell: Sequence[int]) -> tuple[int, int, int]:
    try:
        cells = tuple(int(n) for n in supercell)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"supercell={supercell!r} must be three positive integers") from exc
    if (
        len(cells) != 3
        or any(n < 1 for n in cells)
        or any(float(n) != float(m) for n, m in zip(cells, supercell, strict=False))
    ):
        raise GeometryError(f"supercell={supercell!r} must be three positive integers")
    return cells[0], cells[1], cells[2]


def allowed_x(supercell: Sequence[int] = (1, 1, 1)) -> list[float]:
    """List the compositions x realisable exactly on a supercell of the cubic cell.

    A supercell of ``n = n1 * n2 * n3`` formula units holds ``3 n`` halide sites, so the
    iodide count ``(3 - x) n`` is an integer only for ``x = 3 - k / n``, k = 0 .. 3n.

    Parameters
    ----------
    supercell
        Repetitions of the 5-atom cubic cell along a, b, c.

    Returns
    -------
    list of float
        Allowed x values in ascending order.
    """
    n1, n2, n3 = _check_supercell(supercell)
    n = n1 * n2 * n3
    return [float(Fraction(3 * n - k, n)) for k in range(3 * n, -1, -1)]


def _n_iodide(x: float, n_formula_units: int, supercell: Sequence[int]) -> int:
    n_i = (3.0 - x) * n_formula_units
    k = round(n_i)
    if abs(n_i - k) > 1e-6:
        allowed = allowed_x(supercell)
        shown = (
            ", ".join(f"{v:g}" for v in allowed)
            if len(allowed) <= 25
            else (f"multiples of 1/{n_formula_units} from 0 to 3")
        )
        raise CompositionError(
            f"x={x:g} is not realisable on a {'x'.join(map(str, supercell))} supercell "
            f"({n_formula_units} formula units would need {n_i:g} iodide ions); "
            f"allowed x: {shown}"
        )
    return int(k)


def build_bulk(halide: str = "Br", a: float | None = None) -> Atoms:
    """Cubic (Pm-3m) CsPbX3 unit cell, 5 atoms, order Cs, Pb, X, X, X.

    Parameters
    ----------
    halide
        ``"Br"`` (CsPbBr3) or ``"I"`` (CsPbI3).
    a
        Lattice constant in Å; default the cited experimental value of the cubic phase
        (:data:`CSPBBR3_A` or :data:`CSPBI3_A`).

    Returns
    -------
    ase.Atoms
        Periodic cell; ``info`` holds kind="bulk", x, a, formula_units=1, supercell.
    """
    if halide not in HALIDES:
        raise InputError(f"halide={halide!r} is not supported; allowed: {sorted(HALIDES)}")
    lattice = HALIDES[halide] if a is None else _check_a(a)
    h = lattice / 2.0
    atoms = Atoms(
        symbols=["Cs", "Pb", halide, halide, halide],
        positions=[(h, h, h), (0, 0, 0), (h, 0, 0), (0, h, 0), (0, 0, h)],
        cell=np.eye(3) * lattice,
        pbc=True,
    )
    atoms.info.update(
        kind="bulk",
        x=3.0 if halide == "Br" else 0.0,
        a=lattice,
        formula_units=1,
        supercell=[1, 1, 1],
    )
    return atoms


def _check_a(a: float) -> float:
    value = float(a)
    if not np.isfinite(value) or not 4.0 <= value <= 8.0:
        raise GeometryError(f"lattice constant a={a!r} Å is not plausible; use 4 to 8 Å")
    return value


def build_mixed_halide(
    x: float,
    supercell: Sequence[int] = (2, 2, 2),
    *,
    a: float | None = None,
    seed: int = 0,
    iodide_indices: Sequence[int] | None = None,
) -> Atoms:
    """Cubic CsPbBr(x)I(3-x) supercell with an exact number of iodide ions.

    The supercell repeats the 5-atom cubic cell (see :func:`build_bulk`); of its ``3 n``
    halide sites, exactly ``(3 - x) n`` are I and the rest Br. Which sites are I is drawn
    at random with ``seed`` (same seed, same structure) unless ``iodide_indices`` is given.

    Parameters
    ----------
    x
        Br count per formula unit, in [0, 3]; must be in :func:`allowed_x` of ``supercell``.
    supercell
        Repetitions of the cubic cell along a, b, c.
    a
        Lattice constant in Å; default :func:`vegard_a` of ``x``.
    seed
        Seed of the random halide arrangement.
    iodide_indices
        Atom indices (in the returned supercell) that carry I; overrides ``seed``. They
        must be halide sites and there must be exactly ``(3 - x) n`` of them.

    Returns
    -------
    ase.Atoms
        ``info``: kind="bulk", x, a, formula_units, supercell, seed, n_iodide.

    Raises
    ------
    CompositionError
        If x is outside [0, 3] or not realisable on the supercell (the message lists the
        allowed x), or if ``iodide_indices`` does not match x.
    """
    value = check_x(x)
    cells = _check_supercell(supercell)
    n_fu = cells[0] * cells[1] * cells[2]
    n_i = _n_iodide(value, n_fu, cells)
    lattice = vegard_a(value) if a is None else _check_a(a)
    atoms = build_bulk("Br", a=lattice).repeat(cells)
    halide_sites = np.array([i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Br"])
    if iodide_indices is not None:
        chosen = np.array(sorted(int(i) for i in iodide_indices), dtype=int)
        bad = sorted(set(chosen.tolist()) - set(halide_sites.tolist()))
        if bad:
            raise CompositionError(
                f"iodide_indices {bad} are not halide sites; halide sites are atoms "
                f"{halide_sites.min()}..{halide_sites.max()} whose symbol is Br"
            )
        if len(set(chosen.tolist())) != n_i:
            raise CompositionError(
                f"x={value:g} on {n_fu} formula units needs exactly {n_i} distinct iodide "
                f"indices, got {len(set(chosen.tolist()))}"
            )
    else:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(halide_sites, size=n_i, replace=False))
    symbols = atoms.get_chemical_symbols()
    for i in chosen:
        symbols[int(i)] = "I"
    atoms.set_chemical_symbols(symbols)
    atoms.info.clear()
    atoms.info.update(
        kind="bulk",
        x=value,
        a=lattice,
        formula_units=n_fu,
        supercell=list(cells),
        seed=int(seed),
        n_iodide=n_i,
    )
    return atoms
