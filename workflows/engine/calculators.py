r"""A fast, deterministic mock calculator for plumbing and tests (its numbers are not physics).

ASE's EMT has no parameters for Cs, Pb, Br, I or Si, so the local engine's mock is an ASE
:class:`~ase.calculators.calculator.Calculator` with the same contract: a smooth pair
potential that accepts every element and returns energy, forces and stress.

Functional form
---------------
Every element is given a *role* (``cation`` for metals, ``anion`` for halogens,
``covalent`` for everything else: H, B, C, N, O, Si, P, S, ...) and two radii. Each pair
``(i, j)`` contributes up to three switched Morse-type terms

.. math::

    V(r) = D\,[e^{-2\alpha(r-r_0)} - 2c\,e^{-\alpha(r-r_0)}],\qquad
    E(r) = V(r)\,S(r),

where ``S`` is a cubic switch from 1 at ``r_on`` to 0 at ``r_c`` (energy and forces are
continuous), with ``c = 1`` (a Morse well of depth ``D`` at ``r0``) or ``c = 0`` (pure
repulsion):

* **ionic** term between ions (cation/anion): a well for cation-anion pairs at the sum of
  the contact radii, pure repulsion between like ions. The Cs, Pb, Br and I contact radii
  are chosen so that cubic CsPbBr3 is a minimum near the experimental 5.87 Å (CsPbI3 near
  6.3 Å).
* **covalent** term between two non-metals (halogens included): a deep, short-ranged well
  at the sum of covalent radii with ``r_c = 1.45 r0``, so bonded neighbours hold molecules
  together while second neighbours do not interact (no angular terms: molecules stay
  intact but are floppy).
* **contact** term between a non-metal and a cation (ligand binding to Cs/Pb) and between
  hydrogen and an anion (hydrogen bonds): a shallow well.
* **valence saturation**: a covalent atom (H, C, N, O, Si, ...) whose smooth covalent
  coordination ``Z`` exceeds its valence pays ``saturation * (Z - valence)**2``; without it
  the pair wells would collapse molecules into clusters.

Forces are the exact negative gradient and the stress is the virial; everything is
vectorised over a cached (Verlet-skin) ASE neighbour list: ~1 ms per call for 200 atoms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols, covalent_radii
from ase.neighborlist import neighbor_list
from ase.stress import full_3x3_to_voigt_6_stress

__all__ = ["CountingCalculator", "MockPairCalculator", "element_role", "pair_parameters"]

#: Halogens: the anions of the halide perovskites.
_ANIONS = frozenset({"F", "Cl", "Br", "I", "At"})
#: Non-metals that form covalent bonds (ligand atoms).
_COVALENT = frozenset(
    {"H", "He", "B", "C", "N", "O", "Ne", "Si", "P", "S", "Ar", "As", "Se", "Kr", "Te", "Xe"}
)
#: Contact radii (Å) of ions in the ionic term; fitted to the cubic perovskites
#: (Pb-Br = a/2, Cs-Br = a/sqrt(2) for a ~ 5.9 Å). Other ions: 0.85 x covalent radius.
_CONTACT_RADII: dict[str, float] = {
    "Pb": 1.00,
    "Sn": 0.98,
    "Ge": 0.90,
    "Cs": 2.22,
    "Rb": 2.05,
    "K": 1.90,
    "Na": 1.60,
    "F": 1.40,
    "Cl": 1.80,
    "Br": 1.95,
    "I": 2.15,
}
#: Covalent bond well depths (eV) per element; pair depth is the geometric mean.
_BOND_DEPTH: dict[str, float] = {
    "H": 4.0,
    "C": 3.6,
    "N": 3.2,
    "O": 3.6,
    "Si": 3.2,
    "F": 2.5,
    "Cl": 2.4,
    "Br": 2.0,
    "I": 1.6,
}
_DEFAULT_BOND_DEPTH = 3.0
#: Covalent valence: bonds beyond it cost ``saturation * excess**2`` (no collapse).
_VALENCE: dict[str, float] = {
    "H": 1,
    "B": 3,
    "C": 4,
    "N": 4,
    "O": 2,
    "Si": 4,
    "P": 5,
    "S": 2,
}
_DEFAULT_VALENCE = 4.0
_TERM_KINDS = ("ionic", "covalent", "contact")
#: Covalent neighbours count fully up to 1.45 r0 (the bond's cutoff) and not beyond 1.65 r0.
_COUNT_ON, _COUNT_OFF = 1.45, 1.65
#: Verlet skin (Å) of the cached neighbour list.
_SKIN = 0.6


def element_role(symbol: str) -> str:
    """Role of an element in the mock potential: ``"cation"``, ``"anion"`` or ``"covalent"``."""
    if symbol in _ANIONS:
        return "anion"
    if symbol in _COVALENT:
        return "covalent"
    return "cation"


def _contact_radius(symbol: str) -> float:
    if symbol in _CONTACT_RADII:
        return _CONTACT_RADII[symbol]
    return 0.85 * float(covalent_radii[chemical_symbols.index(symbol)])


def _covalent_radius(symbol: str) -> float:
    return float(covalent_radii[chemical_symbols.index(symbol)])


def pair_parameters(a: str, b: str, params: dict[str, float]) -> dict[str, tuple[float, ...]]:
    """Return the terms ``(D, alpha, r0, r_on, r_c, c)`` acting between ``a`` and ``b``.

    Parameters
    ----------
    a, b
        Chemical symbols.
    params
        The calculator parameters (see :attr:`MockPairCalculator.default_parameters`).

    Returns
    -------
    dict
        Term kind (``"ionic"``, ``"covalent"``, ``"contact"``) -> ``(D, alpha, r0, r_on,
        r_c, c)``: well depth ``D`` (eV), stiffness ``alpha`` (1/Å), well position ``r0``
        (Å), switching start ``r_on`` and cutoff ``r_c`` (Å), and ``c`` (1 for a well, 0 for
        pure repulsion).
    """
    ra, rb = element_role(a), element_role(b)
    terms: dict[str, tuple[float, ...]] = {}
    ions = {"cation", "anion"}
    if ra in ions and rb in ions:
        r0 = _contact_radius(a) + _contact_radius(b)
        if ra != rb:
            d, c = params["ionic_depth"], 1.0
        else:
            d, c = params["repulsion"], 0.0
        terms["ionic"] = (d, params["ionic_alpha"], r0, 1.2 * r0, params["ionic_cutoff"] * r0, c)
    if ra != "cation" and rb != "cation":
        r0 = _covalent_radius(a) + _covalent_radius(b)
        depth_a = _BOND_DEPTH.get(a, _DEFAULT_BOND_DEPTH)
        depth_b = _BOND_DEPTH.get(b, _DEFAULT_BOND_DEPTH)
        d = float(np.sqrt(depth_a * depth_b))
        alpha = params["covalent_stiffness"] / r0
        cutoff = params["covalent_cutoff"]
        if ra == rb == "anion":
            # X-X bonds exist only in X2 molecules (2.3-2.7 Å); in the lattice halides sit
            # >= 3.5 Å apart and a long-ranged X-X well pulled hopping halides into X2-like
            # pairs (NEB bands eV below their endpoints).
            cutoff = params["anion_pair_cutoff"]
        terms["covalent"] = (d, alpha, r0, min(1.15, cutoff - 0.1) * r0, cutoff * r0, 1.0)
    contact = {ra, rb} == {"covalent", "cation"} or (
        {ra, rb} == {"covalent", "anion"} and "H" in (a, b)
    )
    if contact:
        r0 = _covalent_radius(a) + _covalent_radius(b) + params["contact_offset"]
        terms["contact"] = (
            params["contact_depth"],
            params["contact_alpha"],
            r0,
            1.3 * r0,
            1.6 * r0,
            1.0,
        )
    return terms


def _term(
    r: np.ndarray,
    d: np.ndarray,
    alpha: np.ndarray,
    r0: np.ndarray,
    ron: np.ndarray,
    rc: np.ndarray,
    c: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Energy and derivative dE/dr of the switched (possibly repulsive-only) Morse form."""
    x = np.exp(-alpha * (r - r0))
    v = d * (x * x - 2.0 * c * x)
    dv = d * (-2.0 * alpha * x * x + 2.0 * c * alpha * x)
    t = np.clip((r - ron) / (rc - ron), 0.0, 1.0)
    s = 1.0 - t * t * (3.0 - 2.0 * t)
    ds = -6.0 * t * (1.0 - t) / (rc - ron)
    return v * s, dv * s + v * ds


def _switch(r: np.ndarray, r0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bond count ``s(r)`` (1 up to ``_COUNT_ON r0``, 0 from ``_COUNT_OFF r0``) and ``ds/dr``."""
    ron, rc = _COUNT_ON * r0, _COUNT_OFF * r0
    t = np.clip((r - ron) / (rc - ron), 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t), -6.0 * t * (1.0 - t) / (rc - ron)


class MockPairCalculator(Calculator):
    """Shifted-force multi-species Morse pair potential (mock; numbers are not physics).

    Parameters
    ----------
    **kwargs
        Override any of :attr:`default_parameters`: ``ionic_depth`` (eV),
        ``ionic_alpha`` (1/Å), ``repulsion`` (eV), ``ionic_cutoff`` (x r0),
        ``covalent_stiffness`` (alpha x r0), ``covalent_cutoff`` (x r0), ``anion_pair_cutoff``
        (x r0, cutoff of the halide-halide bond: X2 molecules only), ``contact_depth``
        (eV), ``contact_alpha`` (1/Å), ``contact_offset`` (Å), ``saturation`` (eV per
        excess bond squared).

    Notes
    -----
    Deterministic (no random numbers), any element accepted, periodic or not. The number of
    energy/force evaluations is counted in :attr:`n_calls`.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]  # noqa: RUF012
    default_parameters: dict[str, Any] = {  # noqa: RUF012
        "ionic_depth": 0.45,
        "ionic_alpha": 1.3,
        "repulsion": 0.05,
        "ionic_cutoff": 1.5,
        "covalent_stiffness": 2.5,
        "covalent_cutoff": 1.45,
        "anion_pair_cutoff": 1.25,
        "contact_depth": 0.35,
        "contact_alpha": 1.4,
        "contact_offset": 0.45,
        "saturation": 4.0,
    }
    nolabel = True

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(self.default_parameters) - {"atoms", "directory"})
        if unknown:
            from pqdflow.errors import BackendError

            raise BackendError(
                f"unknown MockPairCalculator parameter(s) {unknown}; "
                f"allowed: {sorted(self.default_parameters)}"
            )
        super().__init__(**kwargs)
        self.n_calls = 0
        self._verlet: dict[str, Any] | None = None
        self._tables: dict[
            tuple[str, ...],
            tuple[dict[tuple[str, str], float], dict[str, np.ndarray], np.ndarray],
        ] = {}

    def _species_tables(
        self, symbols: Sequence[str]
    ) -> tuple[dict[tuple[str, str], float], dict[str, np.ndarray], np.ndarray]:
        """Cutoffs per element pair, parameter tables per term kind, valence per species.

        ``tables[kind]`` has shape ``(6, n, n)``: D, alpha, r0, r_on, r_c, c of that term
        between species i and j (D = 0 where the term is absent).
        """
        species = tuple(sorted(set(symbols)))
        if species in self._tables:
            return self._tables[species]
        n = len(species)
        tables = {kind: np.zeros((6, n, n)) for kind in _TERM_KINDS}
        for table in tables.values():
            table[3], table[4] = 1.0, 2.0  # harmless switching range where absent
        cutoffs: dict[tuple[str, str], float] = {}
        for a in species:
            for b in species:
                terms = pair_parameters(a, b, self.parameters)
                i, j = species.index(a), species.index(b)
                for kind, term in terms.items():
                    tables[kind][:, i, j] = term
                if terms:
                    reach = [t[4] for t in terms.values()]
                    if "covalent" in terms:
                        reach.append(_COUNT_OFF * terms["covalent"][2])
                    cutoffs[(a, b)] = max(reach)
        # valence of covalent atoms; halides (ionic in the lattice) are never saturated: NaN
        valence = np.array(
            [
                _VALENCE.get(s, _DEFAULT_VALENCE) if element_role(s) == "covalent" else np.nan
                for s in species
            ],
            dtype=float,
        )
        self._tables[species] = (cutoffs, tables, valence)
        return cutoffs, tables, valence

    def _pairs(
        self, atoms: Atoms, cutoffs: dict[tuple[str, str], float]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pairs ``i, j``, distances and vectors ``r_j - r_i`` (Å) within the cutoffs.

        A Verlet list built with a skin of :data:`_SKIN` Å is reused until an atom has moved
        more than half the skin, or the cell, numbers or periodicity change.
        """
        positions = atoms.get_positions()
        cell = np.array(atoms.cell)
        key = (tuple(atoms.numbers), tuple(atoms.pbc), cell.tobytes())
        cache = self._verlet
        if cache is not None and cache["key"] == key:
            moved = np.linalg.norm(positions - cache["positions"], axis=1)
            if moved.size == 0 or float(moved.max()) < 0.5 * _SKIN:
                i, j, shift = cache["i"], cache["j"], cache["shift"]
                vec = positions[j] - positions[i] + shift
                return i, j, np.linalg.norm(vec, axis=1), vec
        skin_cutoffs = {pair: rc + _SKIN for pair, rc in cutoffs.items() if pair[0] <= pair[1]}
        i, j, offsets = neighbor_list("ijS", atoms, skin_cutoffs)
        shift = offsets @ cell
        self._verlet = {"key": key, "positions": positions.copy(), "i": i, "j": j, "shift": shift}
        vec = positions[j] - positions[i] + shift
        return i, j, np.linalg.norm(vec, axis=1), vec

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Compute energy (eV), forces (eV/Å) and stress (eV/Å^3) of ``atoms``."""
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        self.n_calls += 1
        atoms = self.atoms
        symbols = atoms.get_chemical_symbols()
        natoms = len(atoms)
        energy = 0.0
        forces = np.zeros((natoms, 3))
        virial = np.zeros((3, 3))
        cutoffs, tables, valence = self._species_tables(symbols)
        if natoms > 1 and cutoffs:
            species = sorted(set(symbols))
            index = np.array([species.index(s) for s in symbols])
            i, j, dist, vec = self._pairs(atoms, cutoffs)
            si, sj = index[i], index[j]
            pair_energy = np.zeros(len(i))
            pair_deriv = np.zeros(len(i))
            # covalent coordination Z_i = sum_j s(r_ij), s = 1 inside the bond's range
            cov = tables["covalent"]
            r0_cov = cov[2][si, sj]
            saturable = ~np.isnan(valence)
            bonded = (
                (cov[0][si, sj] > 0)
                & (dist < _COUNT_OFF * r0_cov)
                & (saturable[si] | saturable[sj])
            )
            s_val, bond_switch = _switch(dist[bonded], r0_cov[bonded])
            coordination = np.bincount(i[bonded], weights=s_val, minlength=natoms)
            for table in tables.values():
                inside = (dist < table[4][si, sj]) & (table[0][si, sj] > 0)
                if not np.any(inside):
                    continue
                params = [table[q][si[inside], sj[inside]] for q in range(6)]
                e_r, de_r = _term(dist[inside], *params)
                pair_energy[inside] += e_r
                pair_deriv[inside] += de_r
            # every pair appears twice (i->j and j->i)
            energy = 0.5 * float(pair_energy.sum())
            # valence saturation: penalty * (Z_i - valence_i)^2 above the valence
            excess = np.maximum(np.nan_to_num(coordination - valence[index], nan=0.0), 0.0)
            penalty = float(self.parameters["saturation"])
            energy += penalty * float((excess**2).sum())
            if np.any(excess > 0):
                g = 2.0 * penalty * excess
                pair_deriv[bonded] += (g[i[bonded]] + g[j[bonded]]) * bond_switch
            # dE/dr_i = -sum_j V'(r_ij) D_ij / r_ij  (D_ij = r_j - r_i)
            fvec = (pair_deriv / dist)[:, None] * vec
            for axis in range(3):
                forces[:, axis] = np.bincount(i, weights=fvec[:, axis], minlength=natoms)
            virial = 0.5 * (vec.T @ fvec)
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = forces
        if atoms.cell.rank == 3 and atoms.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(virial / atoms.get_volume())
        else:
            self.results["stress"] = np.zeros(6)


class CountingCalculator(Calculator):
    """Wrap any ASE calculator and count its energy/force evaluations.

    ASE's result cache is kept: asking again for the same structure costs nothing and is
    not counted. Every evaluation asks the wrapped calculator for energy and forces, so a
    later energy or force request never triggers a second evaluation; the stress only when
    it is requested or ``stress`` is set (a cell relaxation asks for both each step). A
    calculator that computes only what it is asked for (CHGNet's stress is a second
    backward pass) then spends nothing on a stress no one reads.

    Parameters
    ----------
    inner
        The calculator that does the work.
    stress
        Ask for the stress in every evaluation (where the wrapped calculator implements it
        and the cell is 3D-periodic).
    """

    nolabel = True

    def __init__(self, inner: Calculator, *, stress: bool = False) -> None:
        super().__init__()
        self.inner = inner
        self.implemented_properties = list(inner.implemented_properties)
        self.stress = bool(stress)
        self.n_calls = 0

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Evaluate the wrapped calculator on ``atoms`` and copy its results."""
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        self.n_calls += 1
        wanted = {"energy", "forces", *properties}
        if self.stress and self.atoms.pbc.all():
            wanted.add("stress")
        wanted &= set(self.inner.implemented_properties)
        self.inner.calculate(self.atoms.copy(), sorted(wanted), list(all_changes))
        self.results = {key: np.copy(value) for key, value in self.inner.results.items()}
        self.results["energy"] = float(self.inner.results["energy"])
        self.results.setdefault("free_energy", self.results["energy"])
