"""Ligand library: the bound species, their neutral references and released species.

Every ligand is built from internal coordinates (bond lengths, angles, dihedrals) in a
local frame: the **binding atom at the origin** and the bond to its first heavy neighbour
along **+z** (away from the surface). The adsorption builder only translates and rotates
that frame about z.

Built-in ligands (Extended Data Fig. 4a of the paper):

* ``OAm``: oleylammonium R-NH3+ (binds N-first in a surface A-site pocket, replacing a Cs+;
  the three N-H point down towards surface halides). Reference: the OAmBr ion pair.
* ``OAc``: oleate R-COO- (one carboxylate O binds the surface Pb at a halide site, replacing
  the halide). Reference: oleic acid R-COOH.
* ``AnHI``: anilinium C6H5NH3+ (A-site pocket, replacing Cs+) plus its iodide at a
  neighbouring halide site (replacing the surface halide). Reference: the anilinium iodide
  ion pair.
* ``TMSBr``: bromotrimethylsilane (CH3)3Si-Br, intact, Br down at a halide site on the Pb
  below (replacing the surface halide), Si-CH3 pointing away. Reference: TMSBr itself.

Chains: OAm and OAc carry the C18 oleyl chain with the cis C9=C10 double bond at full length
(``chain_length=18``). The default is a truncated ``chain_length=4`` (butylammonium /
butanoate): the binding energy is set by the head group and the first carbons, long chains
only add dispersion between ligands and cost cell size and atoms, and truncating the alkyl
tail is common practice in DFT studies of ligated perovskite surfaces. Carbons are counted
from the head: C1 is bonded to N (OAm) or is the carboxyl carbon (OAc).

Bond lengths (Å) used: C-C 1.53, C(sp3)-C(sp2) 1.50, C=C 1.34, C-H 1.09 (aromatic 1.08),
C-N 1.49 (anilinium 1.47), N-H 1.03, C-O 1.26 (carboxylate), O-H 0.97, Si-C 1.87,
Si-Br 2.24, aromatic C-C 1.39.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read as ase_read

from pqdflow.errors import InputError, UnknownLigandError

__all__ = [
    "DEFAULT_CHAIN_LENGTH",
    "FULL_CHAIN_LENGTH",
    "MOLECULAR_ELEMENTS",
    "MOLECULE_VACUUM",
    "REACTION_SPECIES",
    "REDOX_SPECIES",
    "REFERENCE_SPECIES",
    "SILYL_HALIDES",
    "Ligand",
    "build_ligand",
    "build_ligand_reference",
    "build_reaction_species",
    "build_reference_species",
    "get_ligand",
    "known_ligands",
    "register_ligand",
    "unregister_ligand",
]

#: Carbons kept in OAm / OAc unless ``chain_length`` is given (see module docstring).
DEFAULT_CHAIN_LENGTH: int = 4
#: Carbons of the full oleyl / oleate chain (cis C9=C10 double bond).
FULL_CHAIN_LENGTH: int = 18
#: Vacuum (Å) on each side of a molecule in its box (>= 12 Å between periodic images).
MOLECULE_VACUUM: float = 6.0
#: Elements of covalently bonded (organic, silyl) ligands, never of the inorganic CsPbX3
#: framework: such atoms may relax differently between NEB endpoints, and their stiff bonds
#: next to the soft Pb-X tilts change which band optimiser works. Halides are framework.
MOLECULAR_ELEMENTS: frozenset[str] = frozenset({"H", "B", "C", "N", "O", "Si", "P", "S"})

_CC, _CC_SP2, _CdC, _CH, _CH_AR, _CN, _NH = 1.53, 1.50, 1.34, 1.09, 1.08, 1.49, 1.03


_FINE_ROTATIONS: tuple[float, ...] = tuple(float(a) for a in range(0, 360, 15))


@dataclass(frozen=True)
class Ligand:
    """A ligand of the library.

    Attributes
    ----------
    name
        Library name (``"OAm"``, ``"OAc"``, ``"AnHI"``, ``"TMSBr"`` or a registered one).
    description
        What the bound species is, in words.
    charge
        Charge of the bound species built by :func:`build_ligand`, in e.
    site
        Surface site it binds to: ``"A_pocket"`` or ``"X_site"``.
    binding_atom
        Index of the binding (anchor) atom in :func:`build_ligand`'s Atoms (at the origin).
    companion
        Element of a halide ion placed at a neighbouring ``X_site`` with the ligand
        (``"I"`` for AnHI), else None.
    has_chain
        Whether ``chain_length`` applies.
    min_chain_length
        Shortest allowed chain (carbons) for chain ligands.
    reference
        The neutral reference species, in words.
    rotations
        Rotations about z (degrees) the placement tries.
    hbond_donor
        Ammonium head: among clash-free rotations, placement prefers the one whose N-H
        bonds point most directly at surface halides.
    """

    name: str
    description: str
    charge: int
    site: str
    binding_atom: int = 0
    companion: str | None = None
    has_chain: bool = False
    min_chain_length: int = 1
    reference: str = ""
    rotations: tuple[float, ...] = field(
        default=(0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
    )
    hbond_donor: bool = False


# --------------------------------------------------------------------------- geometry


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _place(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, dihedral: float
) -> np.ndarray:
    """Position of d with |cd| = bond, angle(b, c, d) = angle, dihedral(a, b, c, d) (deg)."""
    theta, phi = np.radians(angle), np.radians(dihedral)
    bc = _unit(c - b)
    n = _unit(np.cross(b - a, bc))
    m = np.cross(n, bc)
    d_local = np.array([-np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)])
    return c + bond * (d_local[0] * bc + d_local[1] * m + d_local[2] * n)


def _ch2(prev: np.ndarray, c: np.ndarray, nxt: np.ndarray) -> list[np.ndarray]:
    b1, b2 = _unit(prev - c), _unit(nxt - c)
    u, n = -_unit(b1 + b2), _unit(np.cross(b1, b2))
    half = np.radians(108.5 / 2)
    return [c + _CH * (np.cos(half) * u + s * np.sin(half) * n) for s in (1.0, -1.0)]


def _sp2_h(prev: np.ndarray, c: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    return c - _CH * _unit(_unit(prev - c) + _unit(nxt - c))


def _ch3(pp: np.ndarray, p: np.ndarray, c: np.ndarray, bond: float = _CH) -> list[np.ndarray]:
    return [_place(pp, p, c, bond, 110.5, d) for d in (180.0, 60.0, -60.0)]


def _chain(
    start: list[np.ndarray], k_first: int, n_carbons: int, first_angle: float = 112.0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Grow an oleyl-type chain and its H atoms.

    ``start = [ref, head, C(k_first)]``: the carbon numbered ``k_first`` is already placed,
    bonded to ``head``; carbons ``k_first + 1 .. n_carbons`` are added. Carbon numbering
    follows the oleyl / oleate chain: all-trans sp3 chain with a cis C9=C10 double bond
    flanked by skew (120 deg) C-C bonds, where the chain reaches C10.

    Returns
    -------
    carbons, hydrogens
        Positions of carbons ``k_first .. n_carbons`` and of their H atoms (Å).
    """
    pts = list(start)
    for k in range(k_first + 1, n_carbons + 1):
        bond, angle, dihedral = _CC, 112.0, 180.0
        if k == k_first + 1:
            angle = first_angle
        if k in (9, 11):
            bond = _CC_SP2
        if k == 10:
            bond, angle, dihedral = _CdC, 125.0, 120.0
        if k == 11:
            angle, dihedral = 125.0, 0.0  # cis C8-C9=C10-C11
        if k == 12:
            dihedral = 120.0
        pts.append(_place(pts[-3], pts[-2], pts[-1], bond, angle, dihedral))
    hydrogens: list[np.ndarray] = []
    for pos in range(2, len(pts)):
        k = k_first + pos - 2
        c, prev = pts[pos], pts[pos - 1]
        sp2 = k in (9, 10) and n_carbons >= 10
        if k < n_carbons:
            nxt = pts[pos + 1]
            hydrogens.extend([_sp2_h(prev, c, nxt)] if sp2 else _ch2(prev, c, nxt))
        elif sp2:  # terminal =CH2 of a chain cut at C10
            hydrogens.extend(_place(pts[pos - 2], prev, c, _CH, 121.0, d) for d in (0.0, 180.0))
        else:
            hydrogens.extend(_ch3(pts[pos - 2], prev, c))
    return pts[2:], hydrogens


def _upright(atoms: Atoms, anchor: int = 0) -> Atoms:
    """Rotate so that the anchor-to-carbon-centroid vector points along +z."""
    carbons = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "C"]
    axis = atoms.positions[carbons].mean(axis=0) - atoms.positions[anchor]
    atoms.rotate(axis, "z", center=atoms.positions[anchor])
    return atoms


def _molecule(symbols: list[str], positions: list[np.ndarray], info: dict[str, object]) -> Atoms:
    atoms = Atoms(symbols=symbols, positions=np.array(positions))
    atoms.info.update(info)
    return atoms


def _check_chain(name: str, chain_length: int | None, minimum: int) -> int:
    n = DEFAULT_CHAIN_LENGTH if chain_length is None else chain_length
    if (
        isinstance(n, bool)
        or not isinstance(n, int | np.integer)
        or not minimum <= n <= FULL_CHAIN_LENGTH
    ):
        raise InputError(
            f"chain_length={chain_length!r} for {name}: allowed {minimum} to {FULL_CHAIN_LENGTH} "
            f"carbons (default {DEFAULT_CHAIN_LENGTH}, full oleyl chain {FULL_CHAIN_LENGTH})"
        )
    return int(n)


def _ammonium_h(n_pos: np.ndarray, c1: np.ndarray, ref: np.ndarray) -> list[np.ndarray]:
    return [_place(ref, c1, n_pos, _NH, 110.0, d) for d in (180.0, 60.0, -60.0)]


def _build_oam(chain_length: int | None) -> Atoms:
    n = _check_chain("OAm", chain_length, 1)
    origin, c1 = np.zeros(3), np.array([0.0, 0.0, _CN])
    ref = np.array([1.0, 0.0, -0.4])
    carbons, hs = _chain([ref, origin, c1], 1, n, first_angle=111.0)
    nh = _ammonium_h(origin, c1, carbons[1] if n > 1 else ref)
    atoms = _molecule(["N"] + ["C"] * n + ["H"] * (len(hs) + 3), [origin, *carbons, *hs, *nh], {})
    return _align_first_h(_upright(atoms), [len(atoms) - 3, len(atoms) - 2, len(atoms) - 1])


def _align_first_h(atoms: Atoms, h_idx: list[int]) -> Atoms:
    """Rotate about z so that the first N-H points along azimuth 0 (towards +x)."""
    v = atoms.positions[h_idx[0]]
    atoms.rotate(-np.degrees(np.arctan2(v[1], v[0])), "z", center=(0, 0, 0))
    return atoms


def _build_oac(chain_length: int | None, *, protonated: bool = False) -> Atoms:
    n = _check_chain("OAc", chain_length, 2)
    o1 = np.zeros(3)
    pb = np.array([0.0, 0.0, -2.45])  # the surface Pb this O binds to
    tilt = np.radians(55.0)  # Pb-O-C = 125 deg
    c1 = o1 + 1.26 * np.array([np.sin(tilt), 0.0, np.cos(tilt)])
    o2 = _place(pb, o1, c1, 1.26, 125.0, 180.0)
    c2 = _place(pb, o1, c1, _CC_SP2 + 0.02, 117.5, 0.0)
    carbons, hs = _chain([o1, c1, c2], 2, n, first_angle=112.0)
    symbols = ["O", "C", "O"] + ["C"] * (n - 1) + ["H"] * len(hs)
    positions = [o1, c1, o2, *carbons, *hs]
    if protonated:
        symbols.append("H")
        positions.append(_place(o1, c1, o2, 0.97, 106.0, 0.0))
    return _upright(_molecule(symbols, positions, {}))


def _build_anilinium() -> Atoms:
    n_pos, c1 = np.zeros(3), np.array([0.0, 0.0, 1.47])
    centre = c1 + np.array([0.0, 0.0, 1.39])
    ring, ring_h = [], []
    for k in range(6):
        t = np.radians(60.0 * k)
        direction = np.array([0.0, np.sin(t), -np.cos(t)])  # ring in the yz plane
        ring.append(centre + 1.39 * direction)
        if k:
            ring_h.append(centre + (1.39 + _CH_AR) * direction)
    nh = _ammonium_h(n_pos, c1, ring[1])
    atoms = _molecule(["N"] + ["C"] * 6 + ["H"] * 8, [n_pos, *ring, *ring_h, *nh], {})
    return _align_first_h(atoms, [12, 13, 14])


#: Si-X bond lengths of the trimethylsilyl halides, Å (gas-phase electron diffraction and
#: microwave values, NIST CCCBDB: (CH3)3SiBr 2.24, (CH3)3SiI 2.48).
_SI_X: dict[str, float] = {"Br": 2.24, "I": 2.48}


def _build_tms_halide(halide: str) -> Atoms:
    x, si = np.zeros(3), np.array([0.0, 0.0, _SI_X[halide]])
    ref = np.array([1.0, 0.0, -1.0])
    carbons = [_place(ref, x, si, 1.87, 107.5, d) for d in (0.0, 120.0, 240.0)]
    hs = [h for c in carbons for h in _ch3(x, si, c)]
    return _molecule([halide, "Si", "C", "C", "C"] + ["H"] * 9, [x, si, *carbons, *hs], {})


def _build_tmsbr() -> Atoms:
    return _build_tms_halide("Br")


def _ion_pair(cation: Atoms, h_index: int, anion: str, h_dist: float) -> Atoms:
    """Cation plus a halide on the extension of one N-H bond (N-H...X hydrogen bond)."""
    n_pos, h_pos = cation.positions[0], cation.positions[h_index]
    pair = cation.copy()
    pair.append(anion)
    pair.positions[-1] = h_pos + h_dist * _unit(h_pos - n_pos)
    return pair


# --------------------------------------------------------------------------- registry

_LIGANDS: dict[str, Ligand] = {
    "OAm": Ligand(
        "OAm",
        "oleylammonium R-NH3+ (C18, cis C9=C10), N in a surface A-site pocket",
        charge=1,
        site="A_pocket",
        has_chain=True,
        min_chain_length=1,
        reference="OAmBr ion pair (R-NH3+ Br-)",
        rotations=_FINE_ROTATIONS,
        hbond_donor=True,
    ),
    "OAc": Ligand(
        "OAc",
        "oleate R-COO- (C18, cis C9=C10), one O bound to a surface Pb",
        charge=-1,
        site="X_site",
        has_chain=True,
        min_chain_length=2,
        reference="oleic acid R-COOH",
    ),
    "AnHI": Ligand(
        "AnHI",
        "anilinium C6H5NH3+ in an A-site pocket plus I- at a neighbouring halide site",
        charge=1,
        site="A_pocket",
        companion="I",
        reference="anilinium iodide ion pair C6H5NH3+ I-",
        rotations=_FINE_ROTATIONS,
        hbond_donor=True,
    ),
    "TMSBr": Ligand(
        "TMSBr",
        "bromotrimethylsilane (CH3)3SiBr, intact, Br on a surface Pb",
        charge=0,
        site="X_site",
        reference="TMSBr molecule",
    ),
    "TMSI": Ligand(
        "TMSI",
        "iodotrimethylsilane (CH3)3SiI, intact, I on a surface Pb",
        charge=0,
        site="X_site",
        reference="TMSI molecule",
    ),
}
#: Silyl halides of the library -> the halide they donate (R3Si-X + RCOOH -> R3Si-OOCR + HX);
#: :mod:`pqdflow.workflows.study.channels` plans their reaction channels.
SILYL_HALIDES: dict[str, str] = {"TMSBr": "Br", "TMSI": "I"}
_BUILTIN = frozenset(_LIGANDS)
_BUILDERS: dict[str, Callable[[int | None], Atoms]] = {
    "OAm": _build_oam,
    "OAc": lambda n: _build_oac(n),
    "AnHI": lambda n: _build_anilinium(),
    "TMSBr": lambda n: _build_tmsbr(),
    "TMSI": lambda n: _build_tms_halide("I"),
}
_REFERENCE_BUILDERS: dict[str, Callable[[int | None], Atoms]] = {
    "OAm": lambda n: _ion_pair(_build_oam(n), -3, "Br", 2.35),
    "OAc": lambda n: _build_oac(n, protonated=True),
    "AnHI": lambda n: _ion_pair(_build_anilinium(), 12, "I", 2.55),
    "TMSBr": lambda n: _build_tmsbr(),
    "TMSI": lambda n: _build_tms_halide("I"),
}


def known_ligands() -> list[str]:
    """Names of every ligand in the library (built-in first, then registered)."""
    return list(_LIGANDS)


def get_ligand(name: str) -> Ligand:
    """Return the :class:`Ligand` called ``name``.

    Raises
    ------
    UnknownLigandError
        If ``name`` is not in the library; the message lists the known ligands.
    """
    if isinstance(name, Ligand):
        return name
    if name not in _LIGANDS:
        raise UnknownLigandError(
            f"unknown ligand {name!r}; known ligands: {', '.join(known_ligands())}"
        )
    return _LIGANDS[name]


#: Formal charges of the fragments of each built-in ligand's neutral reference (ion pairs).
_REFERENCE_FRAGMENTS: dict[str, tuple[int, ...]] = {"OAm": (1, -1), "AnHI": (1, -1)}


def _finish(atoms: Atoms, lig: Ligand, chain_length: int | None, role: str) -> Atoms:
    fragments = (lig.charge,) if role == "bound" else _REFERENCE_FRAGMENTS.get(lig.name, (0,))
    atoms.info["fragment_charges"] = list(fragments)
    atoms.info.update(
        kind="molecule",
        ligand=lig.name,
        role=role,
        charge=lig.charge if role == "bound" else 0,
        binding_atom=lig.binding_atom,
        site=lig.site,
        chain_length=(DEFAULT_CHAIN_LENGTH if chain_length is None else int(chain_length))
        if lig.has_chain
        else None,
        formula_units=1,
    )
    if lig.companion:
        atoms.info["companion"] = lig.companion
    return atoms


def build_ligand(name: str, *, chain_length: int | None = None) -> Atoms:
    """Build the bound species of a ligand in its local frame (not in a box).

    Parameters
    ----------
    name
        Ligand name (see :func:`known_ligands`).
    chain_length
        Carbons of the OAm / OAc chain, default 4, full oleyl 18; ignored for ligands
        without a chain.

    Returns
    -------
    ase.Atoms
        Binding atom at the origin, its first heavy neighbour along +z; ``info``: ligand,
        charge (e), binding_atom, site, chain_length, companion (AnHI: ``"I"``, the iodide
        placed separately at a neighbouring halide site).
    """
    lig = get_ligand(name)
    return _finish(_BUILDERS[lig.name](chain_length), lig, chain_length, "bound")


def _boxed(atoms: Atoms, vacuum: float = MOLECULE_VACUUM) -> Atoms:
    atoms.center(vacuum=vacuum)
    atoms.pbc = True
    return atoms


def build_ligand_reference(name: str, *, chain_length: int | None = None) -> Atoms:
    """Build the neutral reference species of a ligand, centred in a periodic box.

    OAm -> OAmBr ion pair, OAc -> oleic acid, AnHI -> anilinium iodide ion pair,
    TMSBr -> TMSBr; registered ligands -> their xyz geometry. The box leaves
    :data:`MOLECULE_VACUUM` (6 Å) on each side, i.e. >= 12 Å between images.
    """
    lig = get_ligand(name)
    atoms = _REFERENCE_BUILDERS[lig.name](chain_length)
    return _boxed(_finish(atoms, lig, chain_length, "reference"))


def register_ligand(
    name: str,
    xyz_path: str | Path,
    *,
    charge: int,
    binding_atom: int,
    site: str = "X_site",
    description: str = "",
) -> Ligand:
    """Add a ligand to the library from an xyz file.

    The geometry is used both as the bound species and as the neutral reference. It is
    reoriented so that ``binding_atom`` sits at the origin and the molecule's centroid lies
    along +z (away from the surface).

    Parameters
    ----------
    name
        New library name (must not shadow a built-in ligand).
    xyz_path
        Path of an xyz file with the ligand geometry, in Å.
    charge
        Charge of the bound species, in e.
    binding_atom
        Index (0-based) of the atom that binds the surface.
    site
        ``"X_site"`` (anchor bound to a surface Pb) or ``"A_pocket"``.
    description
        Free text.
    """
    if name in _BUILTIN:
        raise InputError(f"ligand name {name!r} is built in; choose another name")
    if site not in ("X_site", "A_pocket"):
        raise InputError(f"site={site!r} is not a surface site; allowed: A_pocket, X_site")
    path = Path(xyz_path)
    if not path.is_file():
        raise InputError(f"ligand file {str(path)!r} does not exist")
    try:
        geometry = ase_read(path, format="xyz")
    except Exception as exc:
        raise InputError(f"cannot read {str(path)!r} as xyz: {exc}") from exc
    assert isinstance(geometry, Atoms)
    if not 0 <= binding_atom < len(geometry):
        raise InputError(
            f"binding_atom={binding_atom} is out of range for {len(geometry)} atoms in {path}"
        )
    frame = geometry.copy()
    frame.positions -= frame.positions[binding_atom]
    others = np.delete(frame.positions, binding_atom, axis=0)
    if len(others):
        axis = others.mean(axis=0)
        if np.linalg.norm(axis) > 1e-6:
            frame.rotate(axis, "z", center=(0, 0, 0))
    frame.info.clear()
    lig = Ligand(
        name,
        description or f"user ligand from {path.name}",
        charge=int(charge),
        site=site,
        binding_atom=int(binding_atom),
        reference=f"{name} as read from {path.name}",
    )
    _LIGANDS[name] = lig

    def _copy(_chain_length: int | None, geometry: Atoms = frame) -> Atoms:
        return geometry.copy()

    _BUILDERS[name] = _copy
    _REFERENCE_BUILDERS[name] = _copy
    return lig


def unregister_ligand(name: str) -> None:
    """Remove a user-registered ligand (built-in ligands cannot be removed)."""
    if name in _BUILTIN:
        raise InputError(f"ligand {name!r} is built in and cannot be removed")
    get_ligand(name)
    for table in (_LIGANDS, _BUILDERS, _REFERENCE_BUILDERS):
        table.pop(name, None)


# --------------------------------------------------------------------------- released species

#: CsCl-type (Pm-3m) lattice constants in Å, room temperature: CsBr 4.29, CsI 4.57
#: (R. W. G. Wyckoff, Crystal Structures, vol. 1, 2nd ed., Wiley 1963).
_CSX_A: dict[str, float] = {"CsBr": 4.29, "CsI": 4.57}
#: Experimental gas-phase bond lengths in Å (NIST CCCBDB): HBr, HI, Br2, I2.
_DIATOMIC: dict[str, tuple[str, str, float]] = {
    "HBr": ("H", "Br", 1.414),
    "HI": ("H", "I", 1.609),
    "Br2": ("Br", "Br", 2.281),
    "I2": ("I", "I", 2.666),
}
#: Species released in binding reactions that :func:`build_reference_species` builds.
REFERENCE_SPECIES: tuple[str, ...] = (*_CSX_A, *_DIATOMIC)
#: Released species that are redox products (X- oxidised to X2); a reaction gets them only
#: when it asks for redox chemistry.
REDOX_SPECIES: frozenset[str] = frozenset({"Br2", "I2"})


def build_reference_species(name: str) -> Atoms:
    """Build a species released in a binding reaction.

    ``"CsBr"`` / ``"CsI"``: bulk CsCl-type cell (2 atoms, ``info["formula_units"] = 1``,
    ``kind="bulk"``); ``"HBr"``, ``"HI"``, ``"Br2"``, ``"I2"``: molecule centred in a
    periodic box (``kind="molecule"``), >= 12 Å between images.

    Raises
    ------
    InputError
        If ``name`` is not one of :data:`REFERENCE_SPECIES`.
    """
    if name in _CSX_A:
        a = _CSX_A[name]
        atoms = Atoms(
            symbols=["Cs", name[2:]],
            scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5)],
            cell=np.eye(3) * a,
            pbc=True,
        )
        atoms.info.update(kind="bulk", species=name, formula_units=1, a=a)
        return atoms
    if name in _DIATOMIC:
        s1, s2, d = _DIATOMIC[name]
        atoms = _boxed(Atoms(symbols=[s1, s2], positions=[(0, 0, 0), (0, 0, d)]))
        atoms.info.update(kind="molecule", species=name, formula_units=1, fragment_charges=[0])
        return atoms
    raise InputError(f"unknown reference species {name!r}; allowed: {', '.join(REFERENCE_SPECIES)}")


# --------------------------------------------------------------------------- reaction species

_SI_C, _SI_O, _SI_N = 1.87, 1.66, 1.74


def _add_trimethylsilyl(
    atoms: Atoms, anchor: int, before: int, direction_from: np.ndarray, bond: float
) -> Atoms:
    """Append Si(CH3)3 bonded to ``anchor`` at ``direction_from`` (a removed H position)."""
    a, b = atoms.positions[before], atoms.positions[anchor]
    si = b + bond * _unit(direction_from - b)
    best: tuple[float, list[np.ndarray]] | None = None
    for offset in range(0, 120, 10):  # stagger the methyls against the anchor's substituents
        carbons = [_place(a, b, si, _SI_C, 109.5, d + offset) for d in (60.0, 180.0, 300.0)]
        new = [si, *carbons, *(h for c in carbons for h in _ch3(b, si, c))]
        others = np.delete(atoms.positions, anchor, axis=0)
        gap = float(np.linalg.norm(others[:, None] - np.array(new[1:])[None], axis=2).min())
        if best is None or gap > best[0]:
            best = (gap, new)
    assert best is not None
    out = atoms.copy()
    out.extend(Atoms(["Si", "C", "C", "C"] + ["H"] * 9, positions=best[1]))
    return out


def _build_amine(chain_length: int | None) -> Atoms:
    oam = _build_oam(chain_length)
    del oam[-1]  # R-NH3+ -> R-NH2
    return oam


def _build_tms_amine(chain_length: int | None) -> Atoms:
    amine = _build_amine(chain_length)
    h = amine.positions[-1].copy()
    del amine[-1]
    return _add_trimethylsilyl(amine, 0, 1, h, _SI_N)


def _build_tms_ester(chain_length: int | None) -> Atoms:
    acid = _build_oac(chain_length, protonated=True)
    h = acid.positions[-1].copy()
    del acid[-1]
    return _add_trimethylsilyl(acid, 2, 1, h, _SI_O)


_REACTION_BUILDERS: dict[str, tuple[str, Callable[[int | None], Atoms]]] = {
    "amine": ("oleylamine model R-NH2 (neutral, chain as OAm)", _build_amine),
    "ammonium_iodide": (
        "oleylammonium iodide ion pair R-NH3+ I- (chain as OAm; HI + RNH2)",
        lambda n: _ion_pair(_build_oam(n), -3, "I", 2.55),
    ),
    "tms_ester": ("trimethylsilyl ester R-COO-Si(CH3)3 of the OAc acid", _build_tms_ester),
    "tms_amine": ("N-trimethylsilyl amine R-NH-Si(CH3)3 of the OAm amine", _build_tms_amine),
}
#: Neutral molecules of the TMSBr reaction channels that :func:`build_reaction_species` builds.
REACTION_SPECIES: tuple[str, ...] = tuple(_REACTION_BUILDERS)


def build_reaction_species(name: str, *, chain_length: int | None = None) -> Atoms:
    """Build a neutral molecule of the silyl-halide reaction channels, boxed.

    ``"amine"``: the OAm amine R-NH2; ``"ammonium_iodide"``: the R-NH3+ I- ion pair (HI +
    RNH2, the iodide twin of the OAm reference pair); ``"tms_ester"``: R-COO-Si(CH3)3, the
    silyl ester of the OAc acid (TMSBr + RCOOH -> ester + HBr); ``"tms_amine"``:
    R-NH-Si(CH3)3 (TMSBr + RNH2 -> silylamine + HBr). Chains as OAm / OAc
    (``chain_length`` carbons, default 4).
    Si-C 1.87, Si-O 1.66, Si-N 1.74 Å. The box leaves :data:`MOLECULE_VACUUM` on each side.

    Raises
    ------
    InputError
        If ``name`` is not one of :data:`REACTION_SPECIES`.
    """
    if name not in _REACTION_BUILDERS:
        raise InputError(
            f"unknown reaction species {name!r}; allowed: {', '.join(REACTION_SPECIES)}"
        )
    description, builder = _REACTION_BUILDERS[name]
    atoms = builder(chain_length)
    atoms.info.clear()
    atoms.info.update(
        kind="molecule",
        species=name,
        description=description,
        formula_units=1,
        fragment_charges=[0],
        chain_length=DEFAULT_CHAIN_LENGTH if chain_length is None else int(chain_length),
    )
    return _boxed(atoms)
