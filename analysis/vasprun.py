"""Tolerant vasprun.xml reader: what a (possibly cut or corrupt) vasprun.xml says.

:func:`scan_vasprun` feeds vasprun.xml (gzip, bzip2 or xz compressed or not) to an incremental
XML parser after the heavy ``<eigenvalues>``, ``<dos>`` and ``<projected>`` blocks are dropped
from the byte stream; parsing stops at the first XML error and keeps every ``<calculation>``
closed before it. The calculation-level ``e_wo_entrp`` of VASP < 6.4 actually holds
sigma->0 and ``e_0_energy`` junk (VASP >= 6.4 labels them right), so both are taken from the
last ``<scstep>``, whose labels are right in every version. An SCF loop of NELM iterations
counts as not converged. The result is a raw :class:`~pqdflow.analysis._vaspio.ScanResult`;
:func:`pqdflow.analysis.vasp.parse_calculation` turns it into a document.

Machine-learned force-field runs (VASP >= 6.3, ``ML_LMLFF``) write a DFT step as a
``<calculation>`` and an ML step as a bare ``<structure>``, ``<varray name="forces">`` and
``<energy>`` directly under ``<modeling>``; both are steps, labelled ``kind = "dft"`` /
``"ml"``. XML that stops being well-formed before the file ends (two runs written into one
file, a second document appended, damaged bytes) marks the file corrupt; a file that merely
stops is only cut.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np

from pqdflow.analysis._vaspio import (
    ML_MODES,
    ScanResult,
    below_nelm,
    nan_to_none,
    num,
    read_chunks,
    to_bool,
    to_int,
)

__all__ = ["scan_vasprun"]


_V_HEAVY = (b"<eigenvalues", b"<projected", b"<dos>", b"<dos ", b"<dielectricfunction")
_V_TAG = re.compile(rb"<([A-Za-z_]+)[ >/]")


def _strip_heavy(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Drop eigenvalue/DOS/projection blocks from a vasprun byte stream (they are not needed)."""
    closing: bytes | None = None
    buf = b""
    for chunk in chunks:
        buf += chunk
        out: list[bytes] = []
        while buf:
            if closing is None:
                hits = [i for i in (buf.find(tag) for tag in _V_HEAVY) if i >= 0]
                if not hits:
                    keep = max(0, len(buf) - 24)  # an opening tag may straddle the boundary
                    out.append(buf[:keep])
                    buf = buf[keep:]
                    break
                i = min(hits)
                m = _V_TAG.match(buf, i)
                out.append(buf[:i])
                buf = buf[i:]
                if m is None:  # tag name not complete yet: wait for more bytes
                    break
                closing = b"</" + m.group(1) + b">"
            else:
                j = buf.find(closing)
                if j < 0:
                    buf = buf[-len(closing) :]
                    break
                buf, closing = buf[j + len(closing) :], None
        if out:
            yield b"".join(out)
    if closing is None and buf:
        yield buf


def _varray(el: ET.Element | None) -> np.ndarray | None:
    if el is None:
        return None
    try:
        return np.array([(v.text or "").split() for v in el.iter("v")], dtype=float)
    except ValueError:
        return None


def _vasprun_structure(el: ET.Element) -> tuple[np.ndarray, np.ndarray] | None:
    cell = _varray(el.find("crystal/varray[@name='basis']"))
    frac = _varray(el.find("varray[@name='positions']"))
    if (
        cell is None
        or frac is None
        or cell.shape != (3, 3)
        or frac.ndim != 2
        or frac.shape[1:] != (3,)
    ):
        return None
    return cell, frac @ cell


def _vasprun_calculation(scan: ScanResult, el: ET.Element) -> None:
    energy = el.find("energy")
    scsteps = el.findall("scstep")
    if energy is None or not scsteps:
        scan.problems.append(f"<calculation> {len(scan.steps) + 1} without energies; ignored")
        return
    e_calc = {i.get("name"): num(i.text) for i in energy.iter("i")}
    e_last = {i.get("name"): num(i.text) for i in scsteps[-1].iter("i")}
    scan.steps.append(
        {
            "kind": "dft",
            "free_energy": nan_to_none(e_calc.get("e_fr_energy", math.nan)),
            # VASP < 6.4 mislabels these at calculation level; the scstep labels are right.
            "energy_without_entropy": nan_to_none(e_last.get("e_wo_entrp", math.nan)),
            "energy_sigma0": nan_to_none(e_last.get("e_0_energy", math.nan)),
            "n_scf": len(scsteps),
            "scf_converged": None,  # set once NELM is known: NELM iterations = not converged
        }
    )
    scan.forces = _varray(el.find("varray[@name='forces']"))
    struct = el.find("structure")
    got = _vasprun_structure(struct) if struct is not None else None
    scan.cell, scan.positions = got if got else (None, None)


def _vasprun_ml_step(
    scan: ScanResult,
    energy: ET.Element,
    structure: tuple[np.ndarray, np.ndarray] | None,
    forces: np.ndarray | None,
) -> None:
    """Record an ML force-field step: a top-level ``<energy>`` after its structure and forces."""
    e = {i.get("name"): num(i.text) for i in energy.iter("i")}
    scan.steps.append(
        {
            "kind": "ml",
            "free_energy": nan_to_none(e.get("e_fr_energy", math.nan)),
            "energy_without_entropy": nan_to_none(e.get("e_wo_entrp", math.nan)),
            "energy_sigma0": nan_to_none(e.get("e_0_energy", math.nan)),
            "n_scf": None,
            "scf_converged": None,
        }
    )
    scan.forces = forces
    scan.cell, scan.positions = structure if structure else (None, None)


def _vasprun_params(scan: ScanResult, params: dict[str, str], incar: dict[str, str]) -> None:
    merged = {**incar, **params}
    p = scan.params
    p.encut, p.ediff, p.ediffg, p.sigma = (
        nan_to_none(num(merged.get(k))) for k in ("ENCUT", "EDIFF", "EDIFFG", "SIGMA")
    )
    p.nsw, p.ibrion, p.isif = (
        to_int(merged.get("NSW")),
        to_int(merged.get("IBRION")),
        to_int(merged.get("ISIF")),
    )
    p.nelm, p.ismear, p.ispin = (
        to_int(merged.get("NELM")),
        to_int(merged.get("ISMEAR")),
        to_int(merged.get("ISPIN")),
    )
    p.ivdw = to_int(merged.get("IVDW"))
    p.nblock = to_int(merged.get("NBLOCK"))
    p.ml_lmlff = to_bool(merged.get("ML_LMLFF"))
    p.ml_mode = merged["ML_MODE"].strip().lower() if "ML_MODE" in merged else None
    if p.ml_lmlff is None and p.ml_mode in ML_MODES:
        p.ml_lmlff = True  # VASP >= 6.4: ML_MODE alone switches the force field on
    p.gga = merged["GGA"].strip() if "GGA" in merged else None
    p.lhfcalc, p.ldau = to_bool(merged.get("LHFCALC")), to_bool(merged.get("LDAU"))
    scan.hybrid = (nan_to_none(num(merged.get("HFSCREEN"))), nan_to_none(num(merged.get("AEXX"))))
    scan.metagga = merged.get("METAGGA", "").strip() or None
    if p.potcar_titels and (p.gga or "--") == "--":
        prefix = p.potcar_titels[0].split()[0].upper()
        scan.lexch = {"PAW_PBE": "PE", "PAW_GGA": "91", "US": "CA", "PAW": "CA"}.get(prefix)


class _VasprunReader:
    """What the pull parser's events say, collected into a :class:`ScanResult`."""

    def __init__(self, scan: ScanResult) -> None:
        self.scan = scan
        self.stack: list[str] = []
        self.params: dict[str, str] = {}
        self.incar: dict[str, str] = {}
        self.ml_structure: tuple[np.ndarray, np.ndarray] | None = None  # ML step being read
        self.ml_forces: np.ndarray | None = None

    def event(self, event: str, el: ET.Element) -> None:
        scan, tag = self.scan, el.tag
        if event == "start":
            self.stack.append(tag)
            return
        self.stack.pop()
        parent = self.stack[-1] if self.stack else ""
        if tag == "i":
            name = el.get("name") or ""
            if parent == "generator" and name == "version":
                scan.params.vasp_version = (el.text or "").strip()
            elif parent == "incar":
                self.incar[name] = el.text or ""
            elif "parameters" in self.stack:  # the first NELM is the SCF one, a later one GW's
                self.params.setdefault(name, el.text or "")
        elif tag == "array" and parent == "atominfo":
            rows = [[(c.text or "").strip() for c in rc.iter("c")] for rc in el.iter("rc")]
            if el.get("name") == "atoms":
                scan.symbols = [r[0] for r in rows if r]
            elif el.get("name") == "atomtypes":
                scan.params.potcar_titels = [r[-1] for r in rows if r]
        elif tag == "calculation":
            _vasprun_calculation(scan, el)
            el.clear()
        elif tag == "structure" and el.get("name") in ("initialpos", "finalpos"):
            flags = el.find("varray[@name='selective']")
            if flags is not None:
                rows = [(v.text or "").upper().split() for v in flags.iter("v")]
                scan.free = np.array([any(t.startswith("T") for t in r) for r in rows])
            if el.get("name") == "finalpos":
                scan.final = _vasprun_structure(el)
            el.clear()
        elif parent == "modeling" and tag in ("structure", "varray", "energy"):
            if tag == "structure" and el.get("name") is None:
                self.ml_structure = _vasprun_structure(el)
            elif tag == "varray" and el.get("name") == "forces":
                self.ml_forces = _varray(el)
            elif tag == "energy":
                _vasprun_ml_step(scan, el, self.ml_structure, self.ml_forces)
                self.ml_structure = self.ml_forces = None
            el.clear()
        elif tag == "modeling":
            scan.finished = True

    def finish(self) -> None:
        scan = self.scan
        _vasprun_params(scan, self.params, self.incar)
        nelm = scan.params.nelm
        for step in scan.steps:
            if step["kind"] == "dft":
                step["scf_converged"] = below_nelm(step["n_scf"], nelm)
        scan.nions = len(scan.symbols) if scan.symbols else None


def scan_vasprun(path: Path) -> ScanResult:
    """Read a vasprun.xml (compressed or not) up to its end or its first XML error."""
    scan = ScanResult(source=path)
    reader = _VasprunReader(scan)
    parser: ET.XMLPullParser = ET.XMLPullParser(events=("start", "end"))
    chunks = read_chunks(path, scan)
    for block in _strip_heavy(chunks):
        parser.feed(block)  # an XML error is queued: read_events raises it in its place
        try:
            for event, el in cast("Iterator[tuple[str, ET.Element]]", parser.read_events()):
                reader.event(event, el)
        except ET.ParseError as exc:
            scan.broken = f"{path.name}: malformed XML, reading stopped ({exc})"
            scan.problems.append(scan.broken)
            scan.flag_corrupt(
                f"the XML stops being well-formed after {len(scan.steps)} ionic steps ({exc}): "
                "two runs written into one file, a second document appended, or damaged bytes"
            )
            break
    chunks.close()  # records what it found in the bytes read (NUL blocks) when stopped early
    reader.finish()
    return scan
