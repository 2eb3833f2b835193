"""A fake VASP executable that computes, for end-to-end tests of the VASP route.

Run as ``python -m pqdflow.workflows.testing.fake_vasp [--record FILE]`` in place of
``vasp_std`` (as the ``vasp_cmd`` of ``pqdflow run --backend vasp`` or of
:func:`~pqdflow.workflows.vasp.custodian_jobs.run_vasp_custodian`); custodian starts it in
the run folder as it starts VASP. It reads INCAR (with
:func:`~pqdflow.workflows.testing.mock_vasp.read_incar`), POSCAR (selective dynamics: fixed
atoms), KPOINTS and POTCAR (or ``POTCAR.spec``: no POTCAR licence needed), then:

* **relaxation** (no ``IMAGES`` tag): relaxes the structure with pqdflow's
  :class:`~pqdflow.workflows.engine.calculators.MockPairCalculator` and ASE's BFGS
  (``ISIF = 3``: the cell too, through ``FrechetCellFilter``), to ``|EDIFFG|`` on the
  largest force when EDIFFG is negative (else to an energy change below EDIFFG), at most
  NSW evaluations; ``NSW = 0`` or ``IBRION = -1`` is a single point.
* **NEB** (``IMAGES = N``): a single point of every image ``01 .. N`` on the band as given
  (no band optimisation), with VTST's per-image NEB lines (improved tangent from the
  neighbouring images, spring and real force along it, LCLIMB). The endpoints ``00`` and
  ``N+1`` are evaluated only to orient the tangents; like VASP, nothing is written there.
  Each image OUTCAR says "reached required accuracy" so that the pipeline completes; the
  header says the band was not optimised.

It writes OUTCAR, vasprun.xml, OSZICAR and CONTCAR (per image for an NEB) in VASP's formats
(:mod:`pqdflow.workflows.testing.fake_vasp_outputs`) and prints the OSZICAR lines on
standard output, where custodian's handlers read them (``vasp.out``). NELECT of the INCAR
appears where VASP prints it (OUTCAR ``NELECT =``, ``number of electron``; vasprun
parameters); without it, the neutral count from the POTCAR valences.

**The energies and forces are mock pair-potential numbers: plumbing, never physics.**

``--record FILE`` appends one JSON record per call (folder, INCAR as a dict, POSCAR atom
count, number of images, KPOINTS text, energies, convergence) to ``FILE`` under an
exclusive lock, so a test can compare what ran with the dry run (:func:`read_calls`).
Bad inputs (no INCAR, an unsupported ISIF, POTCARs that do not match POSCAR, ...) are
reported on standard error with exit status 3, and no output is written.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.data import atomic_masses, atomic_numbers
from ase.filters import FrechetCellFilter
from ase.io import read as ase_read
from ase.optimize import BFGS

from pqdflow.errors import InputError, PqdflowError
from pqdflow.fileio import atomic_write_json, atomic_write_text
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.testing.fake_vasp_outputs import (
    FAKE_NOTE,
    IonicStep,
    KpointGrid,
    NebProjection,
    RunHeader,
    Species,
    contcar_text,
    oszicar_text,
    outcar_text,
    vasprun_text,
)
from pqdflow.workflows.testing.mock_vasp import EXIT_BAD_INPUT, read_incar

__all__ = ["FakeRun", "main", "read_calls", "record_call", "run_fake_vasp"]

_KB = 0.1 * units.GPa  # eV/Å^3 per kB


@dataclass(frozen=True)
class FakeRun:
    """What one call computed.

    ``kind`` (``relax``, ``static`` or ``neb``), the energy of every ionic step (of every
    image for an NEB, eV), the ionic steps taken and whether the relaxation converged.
    """

    kind: str
    energies: list[float]
    n_ionic_steps: int
    converged: bool


# ----------------------------------------------------------------------------- inputs
def _poscar_groups(path: Path) -> tuple[list[str] | None, list[int], np.ndarray | None]:
    """Species line (or None), atom counts and selective-dynamics flags (N x 3) of a POSCAR."""
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        row, symbols = 5, None
        if not lines[5].split()[0].isdigit():
            symbols, row = [t.split("/")[0].split("_")[0] for t in lines[5].split()], 6
        counts = [int(t) for t in lines[row].split()]
        flags = None
        if lines[row + 1].strip()[:1] in "sS":
            body = lines[row + 3 : row + 3 + sum(counts)]
            flags = np.array([[t.upper().startswith("T") for t in r.split()[3:6]] for r in body])
    except (IndexError, ValueError) as exc:
        raise InputError(f"{path}: no atom types and counts on lines 6-7; not a POSCAR") from exc
    if flags is not None and flags.shape != (sum(counts), 3):
        raise InputError(f"{path}: selective-dynamics flags missing on some atom lines")
    return symbols, counts, flags


def _zval_table() -> dict[str, float]:
    from pqdflow.workflows.vasp.inputsets import load_preset

    return {str(k): float(v) for k, v in load_preset("base").get("ZVAL", {}).items()}


def _species(directory: Path, symbols: list[str], counts: list[int]) -> list[Species]:
    """Atom types with TITEL and ZVAL from POTCAR, else from POTCAR.spec and pqdflow's table."""
    potcar, spec = directory / "POTCAR", directory / "POTCAR.spec"
    if potcar.is_file():
        text = potcar.read_text(encoding="utf-8", errors="replace")
        titels = [t.strip() for t in re.findall(r"TITEL\s*=\s*([^\n]+)", text)]
        zvals: list[float | None] = [float(z) for z in re.findall(r"ZVAL\s*=\s*([-\d.]+)", text)]
        source = "POTCAR"
    elif spec.is_file():
        names = spec.read_text(encoding="utf-8").split()
        table = _zval_table()
        titels = [f"PAW_PBE {n} (from POTCAR.spec; no POTCAR read)" for n in names]
        zvals = [table.get(n) for n in names]
        source = "POTCAR.spec"
    else:
        raise InputError(f"{directory} has neither POTCAR nor POTCAR.spec; write the inputs first")
    if len(titels) != len(counts) or len(zvals) != len(counts):
        raise InputError(
            f"{directory / source} lists {len(titels)} POTCAR(s) but POSCAR has "
            f"{len(counts)} atom types; they must match one to one"
        )
    return [
        Species(sym, n, titel, zval, float(atomic_masses[atomic_numbers[sym]]))
        for sym, n, titel, zval in zip(symbols, counts, titels, zvals, strict=True)
    ]


def _kpoints(path: Path) -> tuple[KpointGrid, str]:
    if not path.is_file():
        raise InputError(f"{path} is missing; the fake VASP needs an automatic KPOINTS mesh")
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    style = lines[2].strip()[:1].upper() if len(lines) > 3 else ""
    try:
        if lines[1].split()[0] != "0" or style not in ("G", "M"):
            raise ValueError
        divisions = tuple(int(t) for t in lines[3].split()[:3])
        shift = tuple(float(t) for t in lines[4].split()[:3]) if len(lines) > 4 else (0.0,) * 3
    except (IndexError, ValueError) as exc:
        raise InputError(
            f"{path}: only automatic Gamma / Monkhorst-Pack meshes are supported ('0' on line 2, "
            "'Gamma' or 'Monkhorst-Pack' on line 3, three divisions on line 4)"
        ) from exc
    if len(divisions) != 3 or min(divisions) < 1 or len(shift) != 3:
        raise InputError(f"{path}: line 4 must hold three positive divisions, got {lines[3]!r}")
    grid = KpointGrid("Gamma" if style == "G" else "Monkhorst-Pack", divisions, shift)
    return grid, text


def _header(
    directory: Path, folder: Path, incar: Mapping[str, Any], grid: KpointGrid
) -> tuple[RunHeader, Atoms]:
    """Read ``folder/POSCAR`` (with POTCARs from ``directory``) into a header and Atoms."""
    poscar = folder / "POSCAR"
    if not poscar.is_file():
        raise InputError(f"{poscar} is missing")
    symbols, counts, flags = _poscar_groups(poscar)
    try:
        atoms = ase_read(poscar, format="vasp")
    except (ValueError, IndexError, KeyError) as exc:
        raise InputError(f"{poscar} cannot be read as a POSCAR: {exc}") from exc
    assert isinstance(atoms, Atoms)  # one structure from a POSCAR
    if symbols is None:  # VASP 4 POSCAR: the element of each group from the Atoms
        starts = np.cumsum([0, *counts[:-1]])
        symbols = [atoms.get_chemical_symbols()[int(i)] for i in starts]
    species = tuple(_species(directory, symbols, counts))
    if "NELECT" in incar:
        nelect = float(incar["NELECT"])
    elif all(s.zval is not None for s in species):
        nelect = float(sum((s.zval or 0.0) * s.count for s in species))
    else:
        unknown = [s.titel for s in species if s.zval is None]
        raise InputError(
            f"no valence (ZVAL) known for {unknown}; set NELECT in INCAR or provide a POTCAR"
        )
    if "ENCUT" not in incar:
        raise InputError(f"{directory / 'INCAR'} sets no ENCUT; the fake VASP has no POTCAR ENMAX")
    head = RunHeader(
        incar, species, nelect, grid, flags, np.array(atoms.cell[:]), atoms.positions.copy()
    )
    return head, atoms


# ----------------------------------------------------------------------------- computing
def _evaluate(atoms: Atoms) -> IonicStep:
    """Return the current state of ``atoms`` (calculator attached) as an ionic step."""
    stress = atoms.get_stress(voigt=False) if atoms.pbc.all() else np.zeros((3, 3))
    return IonicStep(
        energy=float(atoms.get_potential_energy()),
        forces=np.array(atoms.get_forces(apply_constraint=False)),
        positions=atoms.positions.copy(),
        cell=np.array(atoms.cell[:]),
        stress=-np.asarray(stress) / _KB,
    )


def _relax(head: RunHeader, atoms: Atoms) -> tuple[list[IonicStep], bool, bool]:
    """Relax with the mock potential; return (steps, converged, static)."""
    nsw, ibrion, isif = (int(head.tag(t)) for t in ("NSW", "IBRION", "ISIF"))
    if isif not in (0, 1, 2, 3):
        raise InputError(f"ISIF = {isif} is not supported by the fake VASP; use 0-2 or 3 (cell)")
    work = atoms.copy()
    work.calc = MockPairCalculator()
    if nsw <= 0 or ibrion == -1:
        return [_evaluate(work)], False, True
    ediffg = float(head.tag("EDIFFG"))
    target: Any = FrechetCellFilter(work) if isif == 3 else work
    opt = BFGS(target, logfile=None)
    steps: list[IonicStep] = []
    converged = False
    # fmax = 0 never converges on forces: a positive EDIFFG is an energy criterion
    for by_force in opt.irun(fmax=-ediffg if ediffg < 0 else 0.0, steps=nsw - 1):
        steps.append(_evaluate(work))
        if ediffg < 0:
            converged = bool(by_force)
        elif len(steps) > 1 and abs(steps[-1].energy - steps[-2].energy) < ediffg:
            converged = True
            break
    return steps, converged, False


def _min_image(vector: np.ndarray, cell: np.ndarray) -> np.ndarray:
    frac = vector @ np.linalg.inv(cell)
    return np.asarray((frac - np.round(frac)) @ cell)


def _projection(
    k: int, band: Sequence[IonicStep], free: np.ndarray, spring: float, lclimb: bool
) -> NebProjection:
    """VTST's improved tangent at image ``k`` (Henkelman & Jonsson, JCP 113, 9978 (2000))."""
    cell = band[k].cell
    t_next = _min_image(band[k + 1].positions - band[k].positions, cell)
    t_prev = _min_image(band[k].positions - band[k - 1].positions, cell)
    e_prev, e, e_next = band[k - 1].energy, band[k].energy, band[k + 1].energy
    if e_next > e > e_prev:
        tangent = t_next
    elif e_next < e < e_prev:
        tangent = t_prev
    else:
        d_max = max(abs(e_next - e), abs(e_prev - e))
        d_min = min(abs(e_next - e), abs(e_prev - e))
        tangent = (
            t_next * d_max + t_prev * d_min if e_next > e_prev else t_next * d_min + t_prev * d_max
        )
    tangent = tangent / max(float(np.linalg.norm(tangent)), 1e-12)
    forces = band[k].forces * free[:, None]
    real = float(np.sum(forces * tangent))
    d_next, d_prev = float(np.linalg.norm(t_next)), float(np.linalg.norm(t_prev))
    cosine = float(np.sum(-t_prev * t_next)) / max(d_prev * d_next, 1e-12)
    return NebProjection(
        previous_higher=e_prev > e,
        next_higher=e_next > e,
        tangent=tangent,
        spring_parallel=abs(spring) * (d_next - d_prev),
        real_parallel=real,
        real_perpendicular=float(np.linalg.norm(forces - real * tangent)),
        distance_previous=d_prev,
        distance_next=d_next,
        angle=math.degrees(math.acos(min(1.0, max(-1.0, cosine)))),
        spring=spring,
        lclimb=lclimb,
    )


def _write_outputs(
    folder: Path,
    head: RunHeader,
    steps: list[IonicStep],
    *,
    reached: bool,
    neb: NebProjection | None = None,
) -> str:
    """Write CONTCAR, OSZICAR, vasprun.xml and, last, OUTCAR; return the OSZICAR text."""
    oszicar = oszicar_text(head, steps)
    atomic_write_text(folder / "CONTCAR", contcar_text(head, steps[-1], FAKE_NOTE))
    atomic_write_text(folder / "OSZICAR", oszicar)
    atomic_write_text(folder / "vasprun.xml", vasprun_text(head, steps))
    atomic_write_text(folder / "OUTCAR", outcar_text(head, steps, reached=reached, neb=neb))
    return oszicar


def run_fake_vasp(directory: str | Path) -> FakeRun:
    """Run the fake VASP in ``directory`` (the folder VASP would run in); write its outputs.

    Standard output gets what VASP prints there (OSZICAR lines, the convergence line).

    Raises
    ------
    InputError
        Missing or unsupported inputs; raised before any output is written.
    """
    directory = Path(directory)
    if not (directory / "INCAR").is_file():
        raise InputError(f"{directory} holds no INCAR; the fake VASP runs in a VASP input folder")
    incar = read_incar(directory / "INCAR")
    grid, _ = _kpoints(directory / "KPOINTS")
    print(f" {FAKE_NOTE}")
    if "IMAGES" not in incar:
        head, atoms = _header(directory, directory, incar, grid)
        steps, converged, static = _relax(head, atoms)
        print(_write_outputs(directory, head, steps, reached=converged), end="")
        if converged:
            print(" reached required accuracy - stopping structural energy minimisation")
        kind = "static" if static else "relax"
        return FakeRun(kind, [s.energy for s in steps], len(steps), converged)
    n_images = int(incar["IMAGES"])
    folders = sorted(
        (p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    if [int(p.name) for p in folders] != list(range(n_images + 2)):
        raise InputError(
            f"IMAGES = {n_images} needs image folders 00..{n_images + 1:02d} in {directory}, "
            f"found {[p.name for p in folders]}"
        )
    heads, band = [], []
    for folder in folders:
        head, atoms = _header(directory, folder, incar, grid)
        atoms.calc = MockPairCalculator()
        heads.append(head)
        band.append(_evaluate(atoms))
    spring, lclimb = float(incar.get("SPRING", -5.0)), bool(incar.get("LCLIMB", False))
    print(" NEB: single points of the mock potential on the input band (no band optimisation)")
    for k in range(1, n_images + 1):
        head = heads[k]
        mask = np.ones(len(head.symbols)) if head.selective is None else head.selective.any(1)
        free = np.asarray(mask, dtype=float)
        neb = _projection(k, band, free, spring, lclimb)
        print(f" image {folders[k].name}:")
        print(_write_outputs(folders[k], head, [band[k]], reached=True, neb=neb), end="")
    print(" reached required accuracy - stopping structural energy minimisation")
    return FakeRun("neb", [s.energy for s in band[1:-1]], 1, True)


# ----------------------------------------------------------------------------- the record
def record_call(path: str | Path, entry: Mapping[str, Any]) -> None:
    """Append ``entry`` to the JSON list in ``path`` under an exclusive lock (atomic rewrite)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        calls = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
        atomic_write_json(path, [*calls, dict(entry)])


def read_calls(path: str | Path) -> list[dict[str, Any]]:
    """Return the records of every call written with ``--record path`` (empty if none)."""
    path = Path(path)
    return list(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else []


def _entry(directory: Path) -> dict[str, Any]:
    """Describe a call: folder, INCAR, atoms (of ``00`` for a band), images, KPOINTS text."""
    entry: dict[str, Any] = {"directory": str(directory)}
    if (directory / "INCAR").is_file():
        incar = read_incar(directory / "INCAR")
        entry["incar"] = incar
        poscar = directory / ("00/POSCAR" if "IMAGES" in incar else "POSCAR")
        if poscar.is_file():
            try:
                entry["natoms"] = sum(_poscar_groups(poscar)[1])
            except InputError:
                entry["natoms"] = None
        entry["images"] = incar.get("IMAGES")
    if (directory / "KPOINTS").is_file():
        entry["kpoints"] = (directory / "KPOINTS").read_text(encoding="utf-8")
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m pqdflow.workflows.testing.fake_vasp [--record FILE]``."""
    parser = argparse.ArgumentParser(prog="fake_vasp", description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, default=None, help="JSON file to append a record to")
    parser.add_argument(
        "--directory", type=Path, default=Path.cwd(), help="run folder (default: cwd)"
    )
    args = parser.parse_args(argv)
    directory: Path = args.directory.resolve()
    try:
        entry = _entry(directory)
        run = run_fake_vasp(directory)
    except PqdflowError as exc:
        if args.record is not None:
            record_call(args.record, {**_entry(directory), "error": str(exc)})
        sys.stderr.write(f"fake VASP: {exc}\n")
        return EXIT_BAD_INPUT
    sys.stdout.flush()
    if args.record is not None:
        record_call(
            args.record,
            {
                **entry,
                "kind": run.kind,
                "energies": run.energies,
                "n_ionic_steps": run.n_ionic_steps,
                "converged": run.converged,
            },
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
