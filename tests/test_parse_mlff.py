"""Machine-learned force-field runs of VASP >= 6.3 (``ML_LMLFF``): DFT and ML steps.

The reference set has no ML run, so each case is built in the test from the real 28-step
FeO run (``feo_afm_ggau_relax28``), rewritten into the layout VASP uses for on-the-fly
learning (facts from VASP's ML output writer and real public ML outputs, not their files):

* OUTCAR: every step starts with an ML prediction, ``POSITION ... TOTAL-FORCE (eV/Angst)
  (ML)`` and ``free  energy ML TOTEN`` / ``ML energy  without entropy= ... ML
  energy(sigma->0) =`` lines. A prediction VASP keeps is the step; one it rejects is followed
  by a DFT step (``Iteration N(..)``, N = the MD step) at the same structure. VASP prints the
  ML blocks only every NBLOCK steps.
* vasprun.xml: a DFT step is a ``<calculation>``; an ML step is a bare ``<structure>``,
  ``<varray name="forces">`` and ``<energy>`` directly under ``<modeling>``.

Chosen steps of the real run become ML steps carrying that step's own positions, forces and
energies; the DFT steps keep their real records and get a rejected prediction (their energy
+ 0.05 eV) in front. So every expected value is the untouched original's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pqdflow.analysis.vasp import VaspCalcDoc, parse_calculation

CASE = "feo_afm_ggau_relax28"
ML_STEPS = {4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24, 25, 26, 27, 28}
_STEP_START = re.compile(rb"^[^\n]*- Iteration +(\d+)\( *1\)", re.M)
_DASHES = b" " + b"-" * 83 + b"\n"


def _ml_block(rows: bytes, toten: float, e_wo: float, e_0: float) -> bytes:
    """One ML step of an OUTCAR, in the line formats of VASP's ML writer."""
    return (
        b"  ML FORCE on cell =-STRESS in cart. coord. units (eV/cell)\n\n"
        b"  POSITION                                       TOTAL-FORCE (eV/Angst) (ML)\n"
        + _DASHES
        + rows
        + _DASHES
        + b"    total drift:                                0.000000      0.000000      0.000000\n"
        b"\n\n  ML FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)\n"
        b"  ---------------------------------------------------\n"
        + f"  free  energy ML TOTEN  = {toten:18.8f} eV\n\n".encode()
        + f"  ML energy  without entropy={e_wo:18.8f}".encode()
        + f"  ML energy(sigma->0) ={e_0:18.8f}\n\n".encode()
    )


def _ml_outcar(
    text: bytes, ml: set[int], *, printed: set[int] | None = None, mode: str = "ML_LMLFF = T"
) -> bytes:
    """The FeO OUTCAR rewritten as an ML run (see the module docstring).

    ``printed``: the ML steps whose blocks VASP printed (NBLOCK > 1); default all.
    """
    starts = [m.start() for m in _STEP_START.finditer(text)]
    pieces = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    header = re.sub(rb"(IBRION *= *)2\b", rb"\g<1>0", text[: starts[0]])  # an MD run
    header = header.replace(b" POTCAR:", f"   {mode}\n POTCAR:".encode(), 1)
    out = [header]
    for k, piece in enumerate(pieces, start=1):
        forces = re.search(rb"TOTAL-FORCE \(eV/Angst\)\n -+\n((?:[^\n]*\n)*?) -+\n", piece)
        toten = re.search(rb"free  energy   TOTEN  = *(\S+) eV", piece)
        ewo = re.search(rb"energy  without entropy= *(\S+) +energy\(sigma->0\) = *(\S+)\n", piece)
        assert forces, k
        assert toten, k
        assert ewo, k
        energies = (float(toten.group(1)), float(ewo.group(1)), float(ewo.group(2)))
        if k not in ml:  # a DFT step after the prediction VASP rejected
            out += [_ml_block(forces.group(1), *(e + 0.05 for e in energies)), piece]
        elif printed is None or k in printed:
            out += [_ml_block(forces.group(1), *energies), piece[ewo.end() :]]
        else:
            out.append(piece[ewo.end() :])
    return b"".join(out)


def _ml_vasprun(text: str, ml: set[int], original: VaspCalcDoc) -> str:
    """The FeO vasprun.xml with the ``<calculation>`` of each ML step turned into bare elements."""
    calcs = list(re.finditer(r" <calculation>.*?</calculation>\n", text, flags=re.S))
    out, at = [], 0
    for k, m in enumerate(calcs, start=1):
        out.append(text[at : m.start()])
        at = m.end()
        if k not in ml:
            out.append(m.group(0))
            continue
        body = m.group(0)
        structure = re.search(r" *<structure>.*?</structure>\n", body, flags=re.S)
        forces = re.search(r' *<varray name="forces" >.*?</varray>\n', body, flags=re.S)
        assert structure
        assert forces
        e = original.steps[k - 1]
        energy = (
            f' <energy>\n  <i name="e_fr_energy"> {e["free_energy"]:16.8f} </i>\n'
            f'  <i name="e_wo_entrp"> {e["energy_without_entropy"]:16.8f} </i>\n'
            f'  <i name="e_0_energy"> {e["energy_sigma0"]:16.8f} </i>\n </energy>\n'
        )
        out += [structure.group(0), forces.group(0), energy]
    out.append(text[at:])
    incar_flag = ' <incar>\n  <i type="logical" name="ML_LMLFF"> T  </i>\n'
    return "".join(out).replace(" <incar>\n", incar_flag, 1)


@pytest.fixture
def feo(vasp_reference: Path) -> Path:
    return vasp_reference / CASE


def _assert_steps_match(doc: VaspCalcDoc, original: VaspCalcDoc, ml: set[int]) -> None:
    assert doc.n_ionic_steps == original.n_ionic_steps == 28
    assert doc.n_ml_steps == len(ml)
    assert doc.n_dft_steps == 28 - len(ml)
    assert [s["kind"] for s in doc.steps] == ["ml" if k in ml else "dft" for k in range(1, 29)]
    for k, (mine, real) in enumerate(zip(doc.steps, original.steps, strict=True), start=1):
        for key in ("free_energy", "energy_without_entropy", "energy_sigma0"):
            assert mine[key] == pytest.approx(real[key], abs=1e-8), (k, key)
        if k in ml:
            assert mine["n_scf"] is None
            assert mine["scf_converged"] is None
        else:
            assert mine["n_scf"] == real["n_scf"]


def test_ml_outcar_counts_and_labels_steps(feo: Path, tmp_path: Path) -> None:
    original = parse_calculation(feo / "OUTCAR")
    (tmp_path / "OUTCAR").write_bytes(_ml_outcar((feo / "OUTCAR").read_bytes(), ML_STEPS))
    doc = parse_calculation(tmp_path / "OUTCAR")
    _assert_steps_match(doc, original, ML_STEPS)
    assert doc.parameters.ml_lmlff is True
    assert doc.calc_type == "md"
    assert doc.energy_kind == "ml"  # step 28 is an ML step
    assert doc.energy_sigma0 == pytest.approx(-28.21851457, abs=1e-8)
    assert doc.max_force == pytest.approx(0.010745, abs=1e-6)  # its (copied) ML forces
    assert doc.converged_electronic is True  # the SCF of the last DFT step (20)
    assert doc.status == "ok"
    assert doc.corruption == []
    assert any("22 of 28 ionic steps are ML" in w for w in doc.warnings)


def test_ml_outcar_last_step_dft(feo: Path, tmp_path: Path) -> None:
    ml = ML_STEPS - {28}
    original = parse_calculation(feo / "OUTCAR")
    (tmp_path / "OUTCAR").write_bytes(_ml_outcar((feo / "OUTCAR").read_bytes(), ml))
    doc = parse_calculation(tmp_path / "OUTCAR")
    _assert_steps_match(doc, original, ml)
    assert doc.energy_kind == "dft"
    assert doc.steps[-1]["scf_converged"] is True


def test_ml_only_run(feo: Path, tmp_path: Path) -> None:
    """Every step an ML step, and only ``ML_MODE = run`` (VASP >= 6.4) in the INCAR echo."""
    every = set(range(1, 29))
    text = _ml_outcar((feo / "OUTCAR").read_bytes(), every, mode="ML_MODE = run")
    (tmp_path / "OUTCAR").write_bytes(text)
    doc = parse_calculation(tmp_path / "OUTCAR")
    assert (doc.n_ionic_steps, doc.n_ml_steps, doc.n_dft_steps) == (28, 28, 0)
    assert doc.parameters.ml_mode == "run"
    assert doc.parameters.ml_lmlff is True
    assert doc.converged_electronic is None  # no SCF loop at all
    assert doc.energy_kind == "ml"
    assert doc.status == "ok"


def test_cut_ml_outcar(feo: Path, tmp_path: Path) -> None:
    """Cut after the ML prediction for step 20, before VASP's DFT step 20 began."""
    text = _ml_outcar((feo / "OUTCAR").read_bytes(), ML_STEPS)
    cut = next(m.start() for m in _STEP_START.finditer(text) if m.group(1) == b"20")
    (tmp_path / "OUTCAR").write_bytes(text[:cut])
    doc = parse_calculation(tmp_path / "OUTCAR")
    assert doc.status == "truncated"
    assert doc.n_ionic_steps == 19
    assert doc.energy_kind == "ml"
    assert any("not counted" in w for w in doc.warnings)


def test_ml_vasprun_steps_outside_calculation(feo: Path, tmp_path: Path) -> None:
    original = parse_calculation(feo / "vasprun.xml")
    xml = _ml_vasprun((feo / "vasprun.xml").read_text(encoding="latin-1"), ML_STEPS, original)
    (tmp_path / "vasprun.xml").write_text(xml, encoding="latin-1")
    doc = parse_calculation(tmp_path / "vasprun.xml")
    _assert_steps_match(doc, original, ML_STEPS)
    assert doc.parameters.ml_lmlff is True
    assert doc.energy_kind == "ml"
    assert doc.max_force == pytest.approx(original.max_force, abs=1e-8)
    assert doc.status == "ok"


def test_nblock_thinned_outcar_defers_to_vasprun(feo: Path, tmp_path: Path) -> None:
    """NBLOCK = 2: the OUTCAR prints the ML blocks of even steps only; vasprun.xml has all."""
    original = parse_calculation(feo / "vasprun.xml")
    even = {k for k in ML_STEPS if k % 2 == 0}
    text = _ml_outcar((feo / "OUTCAR").read_bytes(), ML_STEPS, printed=even)
    text = re.sub(rb"(NBLOCK *= *)1\b", rb"\g<1>2", text)
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone/OUTCAR").write_bytes(text)
    alone = parse_calculation(tmp_path / "alone")
    assert alone.corruption == []  # DFT step numbers jump over unprinted ML steps: allowed
    assert alone.n_ionic_steps == 28 - len(ML_STEPS - even)
    assert any("only every NBLOCK = 2 steps" in w for w in alone.warnings)
    (tmp_path / "both").mkdir()
    (tmp_path / "both/OUTCAR").write_bytes(text)
    xml = _ml_vasprun((feo / "vasprun.xml").read_text(encoding="latin-1"), ML_STEPS, original)
    (tmp_path / "both/vasprun.xml").write_text(xml, encoding="latin-1")
    both = parse_calculation(tmp_path / "both")
    _assert_steps_match(both, original, ML_STEPS)
    assert any("read from vasprun.xml" in w for w in both.warnings)
