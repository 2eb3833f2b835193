"""ESP maps of the ligand molecules from GPAW at the paper's settings (Ext. Data Fig. 4b).

Molecules (built by :mod:`pqdflow.structures.ligands`, the builder geometry, single points):
TMSBr, the anilinium cation C6H5NH3+ (the bound species of AnHI, charge +1) and, with
``--pair``, the neutral anilinium iodide ion pair. Each is centred in a cube with 6 Å of
vacuum on every side and run with GPAW: PBE, PAW, plane waves 400 eV, SCF to 1e-5 eV,
Gamma point. The ESP (chemist's sign, vacuum zero) is mapped on the 0.001 e/bohr^3 density
surface. Written per molecule into the output folder: ``<name>.png`` (the map),
``<name>_density.cube`` / ``<name>_esp.cube``, ``<name>_esp.json`` (min/max with sites) and
the GPAW log ``<name>.txt``. Printed: min/max with sites and the CPU time of the SCF and of
the map. The last printed line is one JSON object.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/gpaw_esp.py [--out runs/esp] [--pair]
[--ecut 400] [--only TMSBr]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ase import Atoms

from pqdflow.analysis.esp import esp_map, write_esp_cubes
from pqdflow.analysis.esp_render import plot_esp_map
from pqdflow.structures.ligands import build_ligand, build_ligand_reference
from pqdflow.workflows.engine.gpaw_calc import GpawSettings, gpaw_esp, molecule_in_cubic_box


def molecules(pair: bool) -> dict[str, tuple[Atoms, int]]:
    """Name -> (molecule, net charge)."""
    out = {
        "TMSBr": (build_ligand_reference("TMSBr"), 0),
        "anilinium": (build_ligand("AnHI"), int(build_ligand("AnHI").info["charge"])),
    }
    if pair:
        out["AnHI_pair"] = (build_ligand_reference("AnHI"), 0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/esp"))
    parser.add_argument("--pair", action="store_true", help="also the AnHI ion pair")
    parser.add_argument("--ecut", type=float, default=400.0, help="plane-wave cutoff, eV")
    parser.add_argument("--vacuum", type=float, default=6.0, help="Å on every side")
    parser.add_argument("--only", action="append", help="run only these molecules")
    args = parser.parse_args(argv)
    settings = GpawSettings(ecut=args.ecut)
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for name, (molecule, charge) in molecules(args.pair).items():
        if args.only and name not in args.only:
            continue
        boxed = molecule_in_cubic_box(molecule, args.vacuum)
        c0, w0 = time.process_time(), time.perf_counter()
        grid, energy = gpaw_esp(
            boxed, charge=charge, settings=settings, txt=args.out / f"{name}.txt"
        )
        c1 = time.process_time()
        doc = esp_map(grid)
        doc.write(args.out / f"{name}_esp.json")
        write_esp_cubes(grid, args.out, name)
        c2 = time.process_time()
        plot_esp_map(grid, doc, args.out / f"{name}.png")
        c3, w3 = time.process_time(), time.perf_counter()
        print(doc.summary())
        for site in doc.by_atom:
            print(
                f"    {site['symbol']}{site['index']}: "
                f"{site['min_kcal_mol']:+.1f} .. {site['max_kcal_mol']:+.1f} kcal/mol"
            )
        print(
            f"[{name}] box {boxed.cell[0, 0]:.1f} Å, E = {energy:.4f} eV; CPU: SCF + density "
            f"{c1 - c0:.0f} s, map + cubes {c2 - c1:.0f} s, picture {c3 - c2:.0f} s; "
            f"wall {w3 - w0:.0f} s"
        )
        records.append(
            {
                "name": name,
                "formula": doc.formula,
                "charge": charge,
                "box": round(float(boxed.cell[0, 0]), 2),
                "energy_eV": round(energy, 5),
                "min_kcal_mol": round(doc.min["kcal_mol"], 2),
                "min_site": f"{doc.min['symbol']}{doc.min['index']}",
                "max_kcal_mol": round(doc.max["kcal_mol"], 2),
                "max_site": f"{doc.max['symbol']}{doc.max['index']}",
                "cpu_scf_s": round(c1 - c0, 1),
                "cpu_map_s": round(c3 - c1, 1),
            }
        )
    print(json.dumps({"ecut": args.ecut, "isovalue": 0.001, "molecules": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
