"""VASP displacement folders: written as a dry run, read back through phonopy's VASP interface.

No VASP runs here. After the folders are written, each one gets a ``vasprun.xml`` whose
forces come from a known calculator (the engine's mock pair potential) evaluated on that
folder's own POSCAR, written in the layout real VASP uses (``<generator>`` version,
``<atominfo>``, ``<calculation>`` with ``<structure>``, ``<varray name="forces">`` and
``<energy>``, as in ``shared/vasp_reference/si_relax_plain_small/vasprun.xml``). phonopy's
``parse_set_of_forces`` reads them; the modes must equal those computed directly with the
same calculator, which checks the POSCAR atom order, the force mapping and the units.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ase import Atoms
from ase.io import read

from pqdflow.analysis.vibrations import vibrational_analysis
from pqdflow.errors import OverwriteError, ParseError, VibrationalError
from pqdflow.structures.bulk import build_bulk
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.vasp.inputsets import VaspInputSet
from pqdflow.workflows.vasp.vib_inputs import (
    VIB_MANIFEST,
    read_vib_outputs,
    static_input_set,
    write_vib_inputs,
)


def write_fake_vasprun(folder: Path, calc: MockPairCalculator) -> None:
    """A VASP-layout vasprun.xml for the POSCAR in ``folder``, forces from ``calc``."""
    atoms = read(folder / "POSCAR", format="vasp")
    atoms.calc = calc
    forces = atoms.get_forces()
    energy = atoms.get_potential_energy()
    species: list[str] = []
    for s in atoms.get_chemical_symbols():
        if not species or species[-1] != s:
            species.append(s)
    rows = "".join(
        f"    <rc><c>{s}</c><c>{species.index(s) + 1}</c></rc>\n"
        for s in atoms.get_chemical_symbols()
    )
    basis = "".join(
        f"     <v>{v[0]:16.8f}{v[1]:16.8f}{v[2]:16.8f} </v>\n" for v in atoms.cell.array
    )
    pos = "".join(
        f"    <v>{v[0]:16.8f}{v[1]:16.8f}{v[2]:16.8f} </v>\n" for v in atoms.get_scaled_positions()
    )
    frc = "".join(f"   <v>{v[0]:16.8f}{v[1]:16.8f}{v[2]:16.8f} </v>\n" for v in forces)
    xml = f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<modeling>
 <generator>
  <i name="program" type="string">vasp </i>
  <i name="version" type="string">6.4.2  </i>
 </generator>
 <atominfo>
  <atoms>{len(atoms)}</atoms>
  <types>{len(species)}</types>
  <array name="atoms" >
   <dimension dim="1">ion</dimension>
   <field type="string">element</field>
   <field type="int">atomtype</field>
   <set>
{rows}   </set>
  </array>
 </atominfo>
 <calculation>
  <structure>
   <crystal>
    <varray name="basis" >
{basis}    </varray>
   </crystal>
   <varray name="positions" >
{pos}   </varray>
  </structure>
  <varray name="forces" >
{frc}  </varray>
  <energy>
   <i name="e_fr_energy">{energy:16.8f} </i>
   <i name="e_wo_entrp">{energy:16.8f} </i>
   <i name="e_0_energy">{energy:16.8f} </i>
  </energy>
 </calculation>
</modeling>
"""
    (folder / "vasprun.xml").write_text(xml)


@pytest.fixture
def interleaved() -> Atoms:
    """Cs Pb Br Br Br Cs Pb Br Br Br: POSCAR grouping reorders it, so the mapping is tested."""
    atoms = build_bulk("Br", a=5.945).repeat((2, 1, 1))
    atoms.rattle(0.02, seed=4)
    return atoms


def test_written_folders_and_readback_match_direct_modes(
    interleaved: Atoms, tmp_path: Path
) -> None:
    calc = MockPairCalculator()
    subset = [2, 6, 9]  # a Br, a Pb and a Br of the second cell
    manifest = write_vib_inputs(interleaved, subset, tmp_path / "vib", label="bulk-Br")
    root = tmp_path / "vib"
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == [f"disp-{k:03d}" for k in range(1, 19)] + ["ref"]  # 6 per atom + 1
    assert manifest["poscar_order"] != list(range(10))
    incar = (root / "disp-001" / "INCAR").read_text()
    assert "NSW = 0" in incar
    assert "IBRION = -1" in incar
    assert "ENCUT = 400" in incar
    assert (root / "disp-001" / "POTCAR.spec").read_text().split() == ["Cs_sv", "Pb_d", "Br"]
    for folder in folders:
        write_fake_vasprun(root / folder, calc)
    parsed = read_vib_outputs(root)
    direct = vibrational_analysis(interleaved, calc, subset, label="bulk-Br")
    assert parsed.indices == subset
    assert parsed.label == "bulk-Br"
    # vasprun.xml stores 8 decimals; the modes agree to far better than the noise tolerance
    assert parsed.frequencies_THz == pytest.approx(direct.frequencies_THz, abs=1e-4)
    assert parsed.energy_eV == pytest.approx(direct.energy_eV, abs=1e-6)
    assert parsed.max_force_eV_A == pytest.approx(direct.max_force_eV_A, abs=1e-6)
    assert parsed.provenance["source"] == "vasp"


def test_readback_refuses_missing_or_mixed_up_folders(interleaved: Atoms, tmp_path: Path) -> None:
    calc = MockPairCalculator()
    root = tmp_path / "vib"
    write_vib_inputs(interleaved, [2], root)
    with pytest.raises(ParseError, match="missing"):
        read_vib_outputs(root)
    for folder in [p for p in root.iterdir() if p.is_dir()]:
        write_fake_vasprun(folder, calc)
    a, b = (root / "disp-001" / "POSCAR"), (root / "disp-002" / "POSCAR")
    text_a, text_b = a.read_text(), b.read_text()
    a.write_text(text_b)
    b.write_text(text_a)
    with pytest.raises(ParseError, match="not the structure of disp-001"):
        read_vib_outputs(root)
    (root / VIB_MANIFEST).write_text(json.dumps({"doc_type": "other"}))
    with pytest.raises(ParseError, match="not a VibManifest"):
        read_vib_outputs(root)


def test_bad_inputs_write_nothing(interleaved: Atoms, tmp_path: Path) -> None:
    with pytest.raises(VibrationalError, match="empty atom subset"):
        write_vib_inputs(interleaved, [], tmp_path / "empty")
    assert not (tmp_path / "empty").exists()
    with pytest.raises(VibrationalError, match="outside"):
        write_vib_inputs(interleaved, [99], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_folders_with_outputs_are_not_clobbered(interleaved: Atoms, tmp_path: Path) -> None:
    root = tmp_path / "vib"
    write_vib_inputs(interleaved, [2], root)
    write_fake_vasprun(root / "ref", MockPairCalculator())
    with pytest.raises(OverwriteError):
        write_vib_inputs(interleaved, [2], root)
    write_vib_inputs(interleaved, [2], root, force=True)
    assert not (root / "ref" / "vasprun.xml").exists()
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("vib.bak-")]
    assert len(backups) == 1
    assert (backups[0] / "ref" / "vasprun.xml").is_file()  # moved aside, never deleted


def test_static_input_set_choices() -> None:
    s = static_input_set("slab")
    assert isinstance(s, VaspInputSet)
    assert s.incar_overrides["NSW"] == 0
    with pytest.raises(ValueError, match="not allowed"):
        static_input_set("neb")
