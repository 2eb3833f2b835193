from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.data import covalent_radii

from pqdflow.errors import InputError, UnknownLigandError
from pqdflow.structures.ligands import (
    build_ligand,
    build_ligand_reference,
    build_reference_species,
    known_ligands,
    register_ligand,
    unregister_ligand,
)

# chemical ranges from the issue, Å
RANGES = {
    ("C", "H"): (1.0, 1.15),
    ("H", "N"): (0.98, 1.08),
    ("C", "C"): (1.3, 1.6),
    ("C", "N"): (1.4, 1.55),
    ("C", "Si"): (1.8, 1.95),
    ("Br", "Si"): (2.1, 2.4),
    ("C", "O"): (1.18, 1.40),
    ("H", "O"): (0.94, 1.0),
}


def _bonds(atoms: Atoms) -> list[tuple[int, int, float]]:
    """Covalent bonds by distance (sum of covalent radii x 1.2)."""
    out = []
    d = atoms.get_all_distances()
    for i in range(len(atoms)):
        for j in range(i + 1, len(atoms)):
            cut = 1.2 * (covalent_radii[atoms.numbers[i]] + covalent_radii[atoms.numbers[j]])
            if d[i, j] < cut:
                out.append((i, j, float(d[i, j])))
    return out


def _check_geometry(atoms: Atoms) -> None:
    bonds = _bonds(atoms)
    neighbours: dict[int, list[int]] = {i: [] for i in range(len(atoms))}
    for i, j, dist in bonds:
        pair = tuple(sorted((atoms[i].symbol, atoms[j].symbol)))
        assert pair in RANGES, f"unexpected bond {pair} {dist:.2f} Å"
        lo, hi = RANGES[pair]
        assert lo <= dist <= hi, f"{pair} bond {dist:.3f} Å outside {lo}-{hi}"
        neighbours[i].append(j)
        neighbours[j].append(i)
    for centre, nbs in neighbours.items():
        for a in range(len(nbs)):
            for b in range(a + 1, len(nbs)):
                angle = atoms.get_angle(nbs[a], centre, nbs[b])
                assert 100.0 <= angle <= 130.0, (
                    f"angle at {atoms[centre].symbol}{centre}: {angle:.1f}"
                )
    # no non-bonded contacts closer than 1.7 Å (H...H of neighbouring CH2 are ~2.5 Å)
    bonded = {(i, j) for i, j, _ in bonds}
    d = atoms.get_all_distances()
    for i in range(len(atoms)):
        for j in range(i + 1, len(atoms)):
            if (i, j) not in bonded and not _share_neighbour(neighbours, i, j):
                assert d[i, j] > 1.7, f"non-bonded contact {i}-{j} {d[i, j]:.2f} Å"
    # every H has exactly one bond
    for i, s in enumerate(atoms.get_chemical_symbols()):
        if s == "H":
            assert len(neighbours[i]) == 1


def _share_neighbour(neighbours: dict[int, list[int]], i: int, j: int) -> bool:
    return bool(set(neighbours[i]) & set(neighbours[j]))


def _formula(atoms: Atoms) -> dict[str, int]:
    return dict(Counter(atoms.get_chemical_symbols()))


@pytest.mark.parametrize("n", [1, 4, 9, 10, 12, 18])
def test_oam_formula_and_geometry(n: int) -> None:
    atoms = build_ligand("OAm", chain_length=n)
    double = 1 if n >= 10 else 0  # cis C9=C10 kept once the chain reaches C10
    assert _formula(atoms) == {"N": 1, "C": n, "H": 2 * n + 4 - 2 * double}
    _check_geometry(atoms)
    assert atoms.info["charge"] == 1


@pytest.mark.parametrize("n", [2, 4, 10, 18])
def test_oac_formula_and_geometry(n: int) -> None:
    atoms = build_ligand("OAc", chain_length=n)
    double = 1 if n >= 10 else 0
    assert _formula(atoms) == {"O": 2, "C": n, "H": 2 * n - 1 - 2 * double}
    _check_geometry(atoms)
    assert atoms.info["charge"] == -1


def test_full_length_chains_are_oleyl() -> None:
    oam = build_ligand("OAm", chain_length=18)
    oac = build_ligand("OAc", chain_length=18)
    assert _formula(oam) == {"N": 1, "C": 18, "H": 38}  # oleylammonium C18H35NH3+
    assert _formula(oac) == {"O": 2, "C": 18, "H": 33}  # oleate C17H33COO-
    for atoms in (oam, oac):
        cc = [(i, j, d) for i, j, d in _bonds(atoms) if atoms[i].symbol == atoms[j].symbol == "C"]
        doubles = [(i, j) for i, j, d in cc if d < 1.4]
        assert len(doubles) == 1
        i, j = doubles[0]
        # cis: the two chain carbons on either side are on the same side of C=C
        ni = next(k for a, b, _ in cc for k in (a, b) if i in (a, b) and k not in (i, j))
        nj = next(k for a, b, _ in cc for k in (a, b) if j in (a, b) and k not in (i, j))
        assert (
            abs(atoms.get_dihedral(ni, i, j, nj)) < 10
            or abs(atoms.get_dihedral(ni, i, j, nj)) > 350
        )


def test_default_chain_is_four_carbons() -> None:
    assert _formula(build_ligand("OAm"))["C"] == 4
    assert _formula(build_ligand("OAc"))["C"] == 4


def test_anilinium_and_tmsbr() -> None:
    an = build_ligand("AnHI")
    assert _formula(an) == {"N": 1, "C": 6, "H": 8}
    assert an.info["companion"] == "I"
    _check_geometry(an)
    tms = build_ligand("TMSBr")
    assert _formula(tms) == {"Br": 1, "Si": 1, "C": 3, "H": 9}
    _check_geometry(tms)
    # Br (binding atom) at the origin, Si straight above, methyls further up
    assert np.allclose(tms.positions[0], 0)
    assert tms.positions[1, 2] > 2.0
    assert (tms.positions[2:5, 2] > tms.positions[1, 2]).all()


@pytest.mark.parametrize("name", ["OAm", "OAc", "AnHI", "TMSBr"])
def test_binding_atom_at_origin_and_ligand_points_up(name: str) -> None:
    atoms = build_ligand(name)
    anchor = atoms.info["binding_atom"]
    assert np.allclose(atoms.positions[anchor], 0)
    heavy = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s != "H" and i != anchor]
    assert atoms.positions[heavy, 2].mean() > 1.0


@pytest.mark.parametrize(
    ("name", "formula"),
    [
        ("OAm", {"N": 1, "C": 4, "H": 12, "Br": 1}),
        ("OAc", {"O": 2, "C": 4, "H": 8}),
        ("AnHI", {"N": 1, "C": 6, "H": 8, "I": 1}),
        ("TMSBr", {"Br": 1, "Si": 1, "C": 3, "H": 9}),
    ],
)
def test_references_are_neutral_molecules_in_a_box(name: str, formula: dict[str, int]) -> None:
    ref = build_ligand_reference(name)
    assert _formula(ref) == formula
    assert ref.info["charge"] == 0
    assert ref.pbc.all()
    span = np.ptp(ref.positions, axis=0)
    assert (np.diag(ref.cell) - span >= 12.0 - 1e-9).all()  # >= 12 Å between images
    # ion pairs: the halide sits 2.3-2.6 Å from an ammonium H (hydrogen bond)
    if name in ("OAm", "AnHI"):
        x = len(ref) - 1
        hs = [i for i, s in enumerate(ref.get_chemical_symbols()) if s == "H"]
        assert 2.2 < ref.get_distances(x, hs).min() < 2.7


def test_oleic_acid_reference_geometry() -> None:
    _check_geometry(build_ligand_reference("OAc", chain_length=18))


def test_unknown_ligand_lists_known() -> None:
    with pytest.raises(UnknownLigandError, match=r"'OLA'.*OAm, OAc, AnHI, TMSBr"):
        build_ligand("OLA")


def test_chain_length_out_of_range() -> None:
    with pytest.raises(InputError, match=r"chain_length=19.*1 to 18"):
        build_ligand("OAm", chain_length=19)
    with pytest.raises(InputError, match=r"chain_length=1.*2 to 18"):
        build_ligand("OAc", chain_length=1)


def test_register_ligand_from_xyz(tmp_path: Path) -> None:
    xyz = tmp_path / "formate.xyz"
    xyz.write_text("4\nformate\nO 0.0 0.0 0.0\nC 1.03 0.0 0.72\nO 2.20 0.0 0.30\nH 0.95 0.0 1.81\n")
    try:
        lig = register_ligand("Fo", xyz, charge=-1, binding_atom=0)
        assert "Fo" in known_ligands()
        atoms = build_ligand("Fo")
        assert np.allclose(atoms.positions[0], 0)
        assert atoms.positions[1:, 2].mean() > 0.5  # reoriented: molecule above the anchor
        assert atoms.info["charge"] == -1
        assert lig.site == "X_site"
        assert _formula(build_ligand_reference("Fo")) == {"O": 2, "C": 1, "H": 1}
    finally:
        unregister_ligand("Fo")
    assert "Fo" not in known_ligands()


def test_register_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"does not exist"):
        register_ligand("X", tmp_path / "missing.xyz", charge=0, binding_atom=0)
    xyz = tmp_path / "h2.xyz"
    xyz.write_text("2\n\nH 0 0 0\nH 0 0 0.74\n")
    with pytest.raises(InputError, match=r"binding_atom=5"):
        register_ligand("H2", xyz, charge=0, binding_atom=5)
    with pytest.raises(InputError, match=r"built in"):
        register_ligand("OAm", xyz, charge=0, binding_atom=0)


def test_reference_species() -> None:
    csbr = build_reference_species("CsBr")
    assert csbr.info["formula_units"] == 1
    assert csbr.info["kind"] == "bulk"
    assert csbr.get_chemical_formula() == "BrCs"
    # CsCl type: Cs-Br = a * sqrt(3) / 2 (about 3.7 Å)
    assert csbr.get_distance(0, 1, mic=True) == pytest.approx(csbr.cell[0, 0] * np.sqrt(3) / 2)
    for name, bond in (("HBr", 1.414), ("HI", 1.609), ("Br2", 2.281), ("I2", 2.666)):
        mol = build_reference_species(name)
        assert mol.info["kind"] == "molecule"
        assert mol.get_distance(0, 1) == pytest.approx(bond, abs=1e-3)
    with pytest.raises(InputError, match=r"'Cl2'.*CsBr"):
        build_reference_species("Cl2")
