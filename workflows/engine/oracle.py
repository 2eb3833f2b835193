"""Expensive oracles for the surrogate NEB: a batch of structures in, energies and forces out.

An oracle is any callable ``oracle(structures) -> [(energy, forces), ...]`` (:data:`Oracle`):
energies in eV, forces in eV/Å with shape ``(n_atoms, 3)``, constraints not applied. The
surrogate NEB sends all structures of one round together, so a backend that runs one job
per structure can run a batch as one round: a FireWorks workflow of VASP single points,
GPAW calculations in parallel, or simply one ASE calculator in a loop
(:func:`calculator_oracle`, for any calculator factory of the backend registry).
:func:`evaluate_batch` checks what comes back before anything uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from pqdflow.errors import CalculationFailed

__all__ = ["CalculatorOracle", "Oracle", "calculator_oracle", "evaluate_batch"]

#: A batch oracle: structures in, ``(energy eV, forces eV/Å of shape (n_atoms, 3))`` out.
Oracle = Callable[[Sequence[Atoms]], Sequence[tuple[float, np.ndarray]]]


class CalculatorOracle:
    """A batch oracle from an ASE calculator factory; counts calls and batches.

    Parameters
    ----------
    factory
        Returns a calculator (one is made per batch and reused for its structures).
    """

    def __init__(self, factory: Callable[[], Calculator]) -> None:
        self.factory = factory
        self.n_calls = 0
        self.n_batches = 0

    def __call__(self, structures: Sequence[Atoms]) -> list[tuple[float, np.ndarray]]:
        """Energy and forces of each structure (constraints not applied)."""
        calc = self.factory()
        out = []
        for atoms in structures:
            work = atoms.copy()
            work.calc = calc
            out.append(
                (
                    float(work.get_potential_energy()),
                    np.array(work.get_forces(apply_constraint=False), dtype=float),
                )
            )
            self.n_calls += 1
        self.n_batches += 1
        return out


def calculator_oracle(factory: Callable[[], Calculator]) -> CalculatorOracle:
    """Wrap an ASE calculator factory (e.g. ``get_backend(name).calculator_factory``)."""
    return CalculatorOracle(factory)


def evaluate_batch(
    oracle: Oracle, structures: Sequence[Atoms], labels: Sequence[str]
) -> list[tuple[float, np.ndarray]]:
    """Run one oracle batch and check every result.

    Raises
    ------
    CalculationFailed
        A result count that differs from the batch, or a result (named by its label)
        without a finite energy and finite forces of shape ``(n_atoms, 3)``.
    """
    results = list(oracle(list(structures)))
    if len(results) != len(structures):
        raise CalculationFailed(
            f"the oracle returned {len(results)} results for a batch of {len(structures)}"
        )
    checked = []
    for atoms, label, (energy, forces) in zip(structures, labels, results, strict=True):
        array = np.asarray(forces, dtype=float)
        if (
            not math.isfinite(float(energy))
            or array.shape != (len(atoms), 3)
            or not np.all(np.isfinite(array))
        ):
            raise CalculationFailed(
                f"the oracle returned no finite energy and ({len(atoms)}, 3) finite forces "
                f"for {label}"
            )
        checked.append((float(energy), array))
    return checked
