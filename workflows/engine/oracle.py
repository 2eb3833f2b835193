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
from ase.calculators.calculator import Calculator, all_changes

from pqdflow.errors import CalculationFailed

__all__ = [
    "CalculatorOracle",
    "Oracle",
    "OracleBudgetSpent",
    "OracleCalculator",
    "calculator_oracle",
    "evaluate_batch",
]

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


class OracleBudgetSpent(Exception):
    """Raised inside a band optimisation when the oracle budget is spent."""


class OracleCalculator(Calculator):
    """An ASE calculator that sends each structure to a batch oracle as a batch of one.

    Keeps every result (``history``; :meth:`find`) so a caller can check that a reported
    energy is the oracle's at the reported geometry.

    Parameters
    ----------
    oracle
        The batch oracle (:data:`Oracle`).
    budget
        Most calls; one more raises :class:`OracleBudgetSpent`, which
        :func:`~pqdflow.workflows.engine.surrogate_neb.surrogate_band` turns into
        ``stopped_early`` (None: unlimited).
    """

    implemented_properties = ["energy", "forces"]  # noqa: RUF012  # ASE's convention
    nolabel = True

    def __init__(self, oracle: Oracle, budget: int | None = None) -> None:
        super().__init__()
        self.oracle = oracle
        self.budget = budget
        self.n_calls = 0
        self.n_batches = 0
        self.history: list[tuple[np.ndarray, float, np.ndarray]] = []

    def evaluate(
        self, structures: Sequence[Atoms], labels: Sequence[str]
    ) -> list[tuple[float, np.ndarray]]:
        """One oracle batch, checked and counted (budget enforced)."""
        if self.budget is not None and self.n_calls + len(structures) > self.budget:
            raise OracleBudgetSpent
        results = evaluate_batch(self.oracle, structures, labels)
        self.n_calls += len(structures)
        self.n_batches += 1
        for atoms, (energy, forces) in zip(structures, results, strict=True):
            self.history.append((atoms.positions.copy(), energy, forces))
        return results

    def find(self, positions: np.ndarray) -> tuple[float, np.ndarray] | None:
        """Return the oracle's energy and forces at ``positions`` (Å) if it was evaluated there."""
        for done, energy, forces in reversed(self.history):
            if done.shape == np.shape(positions) and np.allclose(done, positions, atol=1e-8):
                return energy, forces
        return None

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Energy and forces of ``atoms`` from the oracle (its earlier result, if any)."""
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        known = self.find(self.atoms.positions)
        if known is None:  # a point evaluated before is not paid for twice
            ((energy, forces),) = self.evaluate([self.atoms.copy()], ["climbing image"])
        else:
            energy, forces = known
        self.results = {"energy": energy, "free_energy": energy, "forces": forces.copy()}
