"""VASP input sets: golden values per preset, read-back, overrides, atomic idempotent writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.constraints import FixAtoms
from ase.io import read
from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

from pqdflow.errors import EndpointError, InputSetError, OverwriteError
from pqdflow.fileio import sha256_of_files
from pqdflow.workflows.vasp.inputsets import (
    INPUT_PROVENANCE_FILE,
    VaspInputSet,
    available_presets,
    get_input_set,
    load_preset,
    poscar_order,
    prepare_vasp_inputs,
    write_neb_inputs,
    write_vasp_inputs,
)

A = 5.874  # cubic CsPbBr3 (Å)

# The paper's Methods: PBE PAW, ENCUT 400 eV, EDIFF 1e-5 eV, EDIFFG -0.02 eV/Å.
PAPER = {"ENCUT": 400.0, "EDIFF": 1e-5, "EDIFFG": -0.02}
# Closed-shell semiconductor defaults promised in the issue.
COMMON = {"ISMEAR": 0, "ISPIN": 1, "LASPH": True, "PREC": "Accurate"}


def cspbbr3(a: float = A) -> Atoms:
    """Five-atom cubic CsPbBr3 cell: Pb at the origin, Br on the edges, Cs at the centre."""
    return Atoms(
        "PbBr3Cs",
        scaled_positions=[(0, 0, 0), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5), (0.5, 0.5, 0.5)],
        cell=[a, a, a],
        pbc=True,
    )


def toy_slab() -> Atoms:
    """A 2x2 four-layer CsPbBr3 (001) slab with 15 Å vacuum, bottom two layers fixed."""
    unit = cspbbr3().repeat((2, 2, 2))
    unit.center(vacuum=7.5, axis=2)
    z = unit.positions[:, 2]
    fixed = np.where(z < z.min() + A / 2 + 0.1)[0]
    unit.set_constraint(FixAtoms(indices=fixed))
    unit.info.update({"kind": "slab", "termination": "PbX2", "layers": 4})
    return unit


def hbr() -> Atoms:
    return Atoms("HBr", positions=[(0, 0, 0), (0, 0, 1.414)], cell=[5, 5, 5], pbc=True)


def read_back(folder: Path) -> tuple[Incar, Kpoints, Poscar]:
    return (
        Incar.from_file(folder / "INCAR"),
        Kpoints.from_file(folder / "KPOINTS"),
        Poscar.from_file(folder / "POSCAR"),
    )


def test_presets_listed() -> None:
    assert {"base", "bulk_relax", "bulk_fixed_cell", "slab_relax", "molecule"} <= set(
        available_presets()
    )
    assert {"neb_bulk", "neb_slab"} <= set(available_presets())


@pytest.mark.parametrize("preset", ["base", "bulk_relax", "slab_relax", "molecule", "neb_slab"])
def test_every_preset_inherits_paper_values(preset: str) -> None:
    incar = load_preset(preset)["INCAR"]
    for tag, value in {**PAPER, **COMMON}.items():
        assert incar[tag] == value, tag
    assert "MAGMOM" not in incar
    assert load_preset(preset)["POTCAR_FUNCTIONAL"] == "PBE_54"


def test_golden_bulk_relax(tmp_path: Path) -> None:
    out = tmp_path / "bulk"
    write_vasp_inputs(cspbbr3(), out, get_input_set("bulk"))
    incar, kpoints, poscar = read_back(out)
    for tag, value in {**PAPER, **COMMON}.items():
        assert incar[tag] == value, tag
    assert incar["ISIF"] == 3  # cell relaxed
    assert incar["IBRION"] == 2
    assert incar["SIGMA"] == pytest.approx(0.05)
    assert incar["LREAL"] is False  # 5 atoms: reciprocal-space projection
    assert "MAGMOM" not in incar
    assert "LDIPOL" not in incar
    assert "IVDW" not in incar
    # R_k = 25 Å, |b| = 1/5.874 Å^-1: int(25/5.874 + 0.5) = 4
    assert kpoints.style == Kpoints.supported_modes.Gamma
    assert tuple(kpoints.kpts[0]) == (4, 4, 4)
    assert poscar.site_symbols == ["Pb", "Br", "Cs"]
    assert poscar.selective_dynamics is None
    assert (out / "POTCAR.spec").read_text().split() == ["Pb_d", "Br", "Cs_sv"]
    assert not (out / "POTCAR").exists()


def test_golden_bulk_fixed_cell() -> None:
    incar = get_input_set("bulk", relax_cell=False).incar(cspbbr3().repeat(2))
    assert incar["ISIF"] == 2
    assert incar["LREAL"] == "Auto"  # 40 atoms >= 20


def test_golden_slab_relax(tmp_path: Path) -> None:
    built = toy_slab()
    out = tmp_path / "slab"
    write_vasp_inputs(built, out, get_input_set("slab"))
    order = poscar_order(built)
    slab = built[order]  # the written order: grouped by element
    incar, kpoints, poscar = read_back(out)
    for tag, value in {**PAPER, **COMMON}.items():
        assert incar[tag] == value, tag
    assert incar["ISIF"] == 2
    assert incar["LDIPOL"] is True
    assert incar["IDIPOL"] == 3
    # the slab is centred in the cell by construction, so the dipole centre is at 0.5
    assert incar["DIPOL"] == pytest.approx([0.5, 0.5, 0.5], abs=1e-3)
    assert incar["LREAL"] == "Auto"  # 40 atoms
    assert tuple(kpoints.kpts[0]) == (2, 2, 1)  # 11.75 Å in-plane, vacuum along c
    assert poscar.site_symbols == ["Pb", "Br", "Cs"]
    assert (out / "POTCAR.spec").read_text().split() == ["Pb_d", "Br", "Cs_sv"]
    fixed = set(slab.constraints[0].get_indices().tolist())
    assert len(fixed) == 20  # the bottom PbBr2 + CsBr layers of a 2x2 cell
    assert {order[i] for i in fixed} == set(built.constraints[0].get_indices().tolist())
    flags = np.array(poscar.selective_dynamics)
    assert {i for i in range(len(slab)) if not flags[i].any()} == fixed
    assert all(flags[i].all() for i in range(len(slab)) if i not in fixed)
    # ASE reads the same constraint back
    atoms = read(out / "POSCAR", format="vasp")
    assert set(atoms.constraints[0].get_indices().tolist()) == fixed
    assert np.allclose(atoms.positions, slab.positions, atol=1e-8)


def test_dipole_centre_follows_slab_across_boundary() -> None:
    slab = toy_slab()
    del slab.constraints
    slab.translate([0, 0, slab.cell[2, 2] * 0.45])  # slab now wraps through z = 0
    slab.wrap()
    dipol = get_input_set("slab").incar(slab)["DIPOL"]
    assert dipol[2] == pytest.approx(0.95, abs=1e-3)


def test_golden_molecule(tmp_path: Path) -> None:
    out = tmp_path / "hbr"
    write_vasp_inputs(hbr(), out, get_input_set("molecule"))
    incar, kpoints, poscar = read_back(out)
    for tag, value in {**PAPER, **COMMON}.items():
        assert incar[tag] == value, tag
    assert incar["SIGMA"] == pytest.approx(0.01)
    assert incar["ISIF"] == 2
    assert tuple(kpoints.kpts[0]) == (1, 1, 1)
    assert kpoints.style == Kpoints.supported_modes.Gamma
    # box = ceil(1.414 + 2 * 10) = 22 Å, cubic, molecule centred
    assert np.allclose(poscar.structure.lattice.abc, (22.0, 22.0, 22.0))
    centre = poscar.structure.cart_coords.mean(axis=0)
    assert np.allclose(centre, (11.0, 11.0, 11.0), atol=1e-8)
    assert (out / "POTCAR.spec").read_text().split() == ["H", "Br"]


def test_molecule_box_parameter() -> None:
    atoms = get_input_set("molecule", box=30.0).prepare_atoms(hbr())
    assert np.allclose(atoms.cell.lengths(), 30.0)
    with pytest.raises(InputSetError, match="box"):
        get_input_set("molecule", box=15.0).prepare_atoms(hbr())
    with pytest.raises(InputSetError, match="box"):
        get_input_set("slab", box=30.0)


def test_d3bj_switch() -> None:
    assert get_input_set("bulk", dispersion="d3bj").incar(cspbbr3())["IVDW"] == 12
    with pytest.raises(InputSetError, match="dispersion"):
        get_input_set("bulk", dispersion="d4")


def test_kpoint_density_option() -> None:
    assert get_input_set("bulk", kpoint_density=40).kpoint_grid(cspbbr3()) == (7, 7, 7)
    with pytest.raises(InputSetError, match="kpoint_density"):
        get_input_set("bulk", kpoint_density=-1.0)


def test_potcar_order_follows_poscar_groups() -> None:
    atoms = Atoms("CsPbBr3CH", positions=np.arange(21.0).reshape(7, 3), cell=[30, 30, 30])
    assert get_input_set("slab").potcar_symbols(atoms) == ["Cs_sv", "Pb_d", "Br", "C", "H"]
    mixed = Atoms("CsBrHBrC", positions=np.arange(15.0).reshape(5, 3), cell=[30, 30, 30])
    assert poscar_order(mixed) == [0, 1, 3, 2, 4]
    written = get_input_set("slab").prepare_atoms(mixed)
    assert written.get_chemical_symbols() == ["Cs", "Br", "Br", "H", "C"]
    assert get_input_set("slab").potcar_symbols(written) == ["Cs_sv", "Br", "H", "C"]
    with pytest.raises(InputSetError, match="'Fe'"):
        get_input_set("slab").potcar_symbols(Atoms("Fe", cell=[3, 3, 3]))


def test_overrides_are_absolute_and_none_removes() -> None:
    input_set = get_input_set("bulk", incar_overrides={"ENCUT": 520, "LASPH": None, "NCORE": 4})
    incar = input_set.incar(cspbbr3())
    assert incar["ENCUT"] == 520.0
    assert isinstance(incar["ENCUT"], float)
    assert "LASPH" not in incar
    assert incar["NCORE"] == 4
    assert incar["LREAL"] is False
    assert get_input_set("bulk", incar_overrides={"LREAL": "Auto"}).incar(cspbbr3())["LREAL"] == (
        "Auto"
    )


@pytest.mark.parametrize(
    ("overrides", "tag"),
    [
        ({"ENCUT": "abc"}, "ENCUT"),
        ({"ISIF": 2.5}, "ISIF"),
        ({"LASPH": 1}, "LASPH"),
        ({"ENCTU": 500}, "ENCTU"),
        ({"encut": 500}, "encut"),
    ],
)
def test_bad_overrides_name_the_tag(overrides: dict[str, object], tag: str) -> None:
    with pytest.raises(InputSetError, match=tag):
        VaspInputSet(preset="bulk_relax", incar_overrides=overrides)


def test_unknown_preset_and_kind() -> None:
    with pytest.raises(InputSetError, match="nope"):
        VaspInputSet(preset="nope")
    with pytest.raises(InputSetError, match="crystal"):
        get_input_set("crystal")


def test_write_is_idempotent_and_hash_matches_files(tmp_path: Path) -> None:
    out = tmp_path / "bulk"
    first = write_vasp_inputs(cspbbr3(), out, get_input_set("bulk"))
    names = ["INCAR", "KPOINTS", "POSCAR", "POTCAR.spec"]
    assert sha256_of_files(out, names) == first.input_sha256
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    second = write_vasp_inputs(cspbbr3(), out, get_input_set("bulk"))
    assert second.input_sha256 == first.input_sha256
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert second.write(out) is False
    record = (out / INPUT_PROVENANCE_FILE).read_text()
    assert first.input_sha256 in record
    assert '"pqdflow_version"' in record


def test_structure_metadata_in_provenance(tmp_path: Path) -> None:
    out = tmp_path / "slab"
    write_vasp_inputs(toy_slab(), out, get_input_set("slab"))
    import json

    record = json.loads((out / INPUT_PROVENANCE_FILE).read_text())
    assert record["structure"]["info"]["termination"] == "PbX2"
    assert record["structure"]["natoms"] == 40
    assert record["kpoint_grid"] == [2, 2, 1]


def test_outputs_never_clobbered(tmp_path: Path) -> None:
    out = tmp_path / "bulk"
    write_vasp_inputs(cspbbr3(), out, get_input_set("bulk"))
    (out / "OUTCAR").write_text("finished run")
    # same inputs: nothing to do, OUTCAR untouched
    write_vasp_inputs(cspbbr3(), out, get_input_set("bulk"))
    assert (out / "OUTCAR").read_text() == "finished run"
    changed = get_input_set("bulk", incar_overrides={"ENCUT": 500})
    with pytest.raises(OverwriteError, match="OUTCAR"):
        write_vasp_inputs(cspbbr3(), out, changed)
    assert Incar.from_file(out / "INCAR")["ENCUT"] == 400.0
    write_vasp_inputs(cspbbr3(), out, changed, force=True)
    assert Incar.from_file(out / "INCAR")["ENCUT"] == 500.0
    assert not (out / "OUTCAR").exists()
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("bulk.bak-")]
    assert len(backups) == 1
    assert (backups[0] / "OUTCAR").read_text() == "finished run"


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputSetError):
        write_vasp_inputs(Atoms("Fe", cell=[3, 3, 3]), tmp_path / "fe", get_input_set("bulk"))
    assert list(tmp_path.iterdir()) == []


def test_extra_files_hashed(tmp_path: Path) -> None:
    a = write_vasp_inputs(
        cspbbr3(), tmp_path / "a", get_input_set("bulk"), extra_files={"NOTE": "x"}
    )
    b = prepare_vasp_inputs(cspbbr3(), get_input_set("bulk"))
    assert (tmp_path / "a" / "NOTE").read_text() == "x"
    assert a.input_sha256 != b.input_sha256
    with pytest.raises(InputSetError, match="INCAR"):
        prepare_vasp_inputs(cspbbr3(), get_input_set("bulk"), extra_files={"INCAR": "x"})


def test_real_potcar_when_library_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "psp" / "POT_GGA_PAW_PBE_54"
    for symbol in ("Pb_d", "Br", "Cs_sv"):
        (lib / symbol).mkdir(parents=True)
        (lib / symbol / "POTCAR").write_text(f"fake {symbol}\n")
    monkeypatch.setenv("PMG_VASP_PSP_DIR", str(tmp_path / "psp"))
    out = tmp_path / "bulk"
    result = write_vasp_inputs(cspbbr3(), out, get_input_set("bulk"))
    assert (out / "POTCAR").read_text() == "fake Pb_d\nfake Br\nfake Cs_sv\n"
    assert not (out / "POTCAR.spec").exists()
    # the input hash does not depend on the licence
    monkeypatch.delenv("PMG_VASP_PSP_DIR")
    assert prepare_vasp_inputs(cspbbr3(), get_input_set("bulk")).input_sha256 == result.input_sha256
    assert "PMG_VASP_PSP_DIR" not in os.environ


def neb_images(n: int = 3) -> list[Atoms]:
    slab = toy_slab()
    top = int(np.argmax(slab.positions[:, 2]))
    final = slab.copy()
    final.positions[top, 0] += 1.0
    images = [slab]
    for i in range(1, n + 1):
        image = slab.copy()
        image.positions[top, 0] += i / (n + 1)
        del image.constraints  # interpolation drops constraints: the writer must restore them
        images.append(image)
    images.append(final)
    return images


def test_golden_neb_vtst(tmp_path: Path) -> None:
    images = neb_images(3)
    out = tmp_path / "neb"
    write_neb_inputs(images, out, get_input_set("neb", host="slab"))
    incar = Incar.from_file(out / "INCAR")
    for tag, value in PAPER.items():
        assert incar[tag] == value, tag
    assert incar["IMAGES"] == 3
    assert incar["SPRING"] == -5
    assert incar["IBRION"] == 3
    assert incar["POTIM"] == 0
    assert incar["IOPT"] == 1
    assert incar["LCLIMB"] is True
    assert incar["LDIPOL"] is True
    assert tuple(Kpoints.from_file(out / "KPOINTS").kpts[0]) == (2, 2, 1)
    assert (out / "POTCAR.spec").read_text().split() == ["Pb_d", "Br", "Cs_sv"]
    order = poscar_order(images[0])
    fixed = set(images[0][order].constraints[0].get_indices().tolist())
    assert len(fixed) == 20
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["00", "01", "02", "03", "04"]
    for i, image in enumerate(images):
        poscar = Poscar.from_file(out / f"{i:02d}" / "POSCAR")
        frozen = {j for j, f in enumerate(poscar.selective_dynamics) if not any(f)}
        assert frozen == fixed, f"image {i:02d}"
        ase_image = read(out / f"{i:02d}" / "POSCAR", format="vasp")
        assert np.allclose(ase_image.positions, image.positions[order], atol=1e-8)


def test_golden_neb_plain_vasp() -> None:
    incar = get_input_set("neb", host="bulk", vtst=False).incar(cspbbr3(), n_images=5)
    assert incar["IBRION"] == 1
    assert incar["POTIM"] == pytest.approx(0.5)
    assert "LCLIMB" not in incar
    assert "IOPT" not in incar
    assert incar["IMAGES"] == 5
    assert incar["ISIF"] == 2
    assert "LDIPOL" not in incar
    with pytest.raises(InputSetError, match="LCLIMB"):
        get_input_set("neb", host="bulk", vtst=False, incar_overrides={"LCLIMB": True})


def test_neb_rejects_mismatched_images(tmp_path: Path) -> None:
    images = neb_images(1)
    images[1] = images[1][::-1]
    with pytest.raises(EndpointError, match="01"):
        write_neb_inputs(images, tmp_path / "neb", get_input_set("neb"))
    assert not (tmp_path / "neb").exists()
    with pytest.raises(InputSetError, match="NEB"):
        write_vasp_inputs(cspbbr3(), tmp_path / "x", get_input_set("neb"))


def test_neb_image_outcar_protects_folder(tmp_path: Path) -> None:
    out = tmp_path / "neb"
    write_neb_inputs(neb_images(1), out, get_input_set("neb"))
    (out / "01" / "OUTCAR").write_text("image ran")
    with pytest.raises(OverwriteError):
        write_neb_inputs(neb_images(1), out, get_input_set("neb", vtst=False))
    assert (out / "01" / "OUTCAR").read_text() == "image ran"


def test_charge_sets_nelect_from_zval() -> None:
    from pqdflow.workflows.vasp.inputsets import VaspInputSet

    # CsPbBr3 with one Br removed: Cs_sv 9 + Pb_d 14 + 2 x Br 7 = 37 valence electrons
    pos = [[0, 0, 0], [3.0, 3.0, 3.0], [3.0, 3.0, 0.0], [3.0, 0.0, 3.0]]
    atoms = Atoms("CsPbBr2", positions=pos, cell=[6.0, 6.0, 6.0], pbc=True)
    neutral = VaspInputSet("slab_relax")
    assert "NELECT" not in neutral.incar(atoms)
    assert neutral.neutral_electrons(atoms) == 37
    charged = VaspInputSet("slab_relax", charge=1)
    assert charged.incar(atoms)["NELECT"] == 36.0
    assert (
        VaspInputSet("slab_relax", charge=1, incar_overrides={"NELECT": 35}).incar(atoms)["NELECT"]
        == 35
    )
    with pytest.raises(InputSetError, match="charge"):
        VaspInputSet("slab_relax", charge=0.5)  # type: ignore[arg-type]
    with pytest.raises(InputSetError, match="ZVAL"):
        VaspInputSet("slab_relax", charge=1, potcar_overrides={"Br": "Br_GW"}).incar(atoms)
