"""DFT check of the CHGNet V_Br barrier: GPAW single points on the CHGNet images.

System: the V_Br hop in a 2x2x2 cubic CsPbBr3 supercell (39 atoms), built as in
``benchmarks/neb_efficiency.py`` (CHGNet lattice constant, host rattled with ``--seed`` and
relaxed, endpoints from :func:`pqdflow.structures.defects.build_neb_endpoints` relaxed
tightly), the band converged by the CHGNet backend (``get_backend("chgnet").neb``: pqdflow's
recipe, climbing image). Then GPAW single points on the initial, climbing and final images
as V_Br+ (charge +1, as the VASP path's NELECT), Gamma point, PBE, PW 400 eV, SCF to
1e-5 eV, and :func:`pqdflow.workflows.engine.dft_check.dft_check_images` reports the GPAW barrier
next to the CHGNet one. Everything goes to ``--out`` (default ``runs/vbr_check``); a rerun
reads finished relaxations, band and single points back.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/gpaw_vbr_check.py [--out DIR] [--ecut 400]``.
The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from ase.io import read

from pqdflow.documents.plan import CalcSpec, NebSpec
from pqdflow.documents.results import NebDoc
from pqdflow.structures.bulk import build_bulk
from pqdflow.structures.defects import build_neb_endpoints
from pqdflow.workflows.backends import get_backend
from pqdflow.workflows.engine.dft_check import dft_check_images, neb_check_images
from pqdflow.workflows.engine.gpaw_calc import GpawSettings, gpaw_calculator_factory
from pqdflow.workflows.study.steps import relax_calculation, run_neb


def chgnet_band(out: Path, seed: int) -> NebDoc:
    """Relax the V_Br endpoints and converge the band with CHGNet (finished steps are read)."""
    backend = get_backend("chgnet")
    unit = relax_calculation(
        CalcSpec("bulk", "bulk", build_bulk("Br", a=5.9), relax_cell=True), backend, out / "bulk"
    ).read_structure()
    a = float(unit.cell.lengths().mean())
    host = build_bulk("Br", a=a).repeat((2, 2, 2))
    host.rattle(0.05, seed=seed)
    host = relax_calculation(CalcSpec("host", "bulk", host), backend, out / "host").read_structure()
    br = [i for i, s in enumerate(host.get_chemical_symbols()) if s == "Br"]
    vacancy = br[0]
    d = host.get_distances(vacancy, br, mic=True)
    hop = br[int(np.argmin(np.where(d > 0.1, d, np.inf)))]
    initial, final = build_neb_endpoints(host, vacancy_index=vacancy, hop_index=hop)
    docs = [
        relax_calculation(CalcSpec(name, "bulk", atoms, role=f"neb_{name}"), backend, out / name)
        for name, atoms in (("initial", initial), ("final", final))
    ]
    meta = {"charge": 1, "lattice_a": a, "seed": seed}
    hopping = int(initial.info["neb"]["hopping_index"])
    spec = NebSpec("neb-bulk-VBr", "bulk", "initial", "final", 5, hopping, meta=meta)
    return run_neb(spec, docs[0], docs[1], backend, out / "neb-bulk-VBr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/vbr_check"))
    parser.add_argument("--ecut", type=float, default=400.0, help="plane-wave cutoff, eV")
    parser.add_argument("--seed", type=int, default=0, help="host rattle seed")
    parser.add_argument(
        "--all-images", action="store_true", help="DFT on every band image, not only 3"
    )
    args = parser.parse_args(argv)
    c0, w0 = time.process_time(), time.perf_counter()
    neb = chgnet_band(args.out, args.seed)
    c1 = time.process_time()
    print(
        f"[chgnet] band converged={neb.converged}, {neb.n_force_calls} image force calls, "
        f"Ea {neb.Ea_eV:.4f} eV (spline {neb.Ea_spline_eV:.4f}); CPU {c1 - c0:.0f} s"
    )
    images, labels, ml = neb_check_images(neb)
    if args.all_images:
        band = read(Path(neb.directory) / neb.band_path, index=":", format="extxyz")
        top = int(np.argmax(neb.image_energies))
        named = {0: "initial", top: "saddle", len(band) - 1: "final"}
        images = list(band)
        labels = [named.get(i, f"image_{i:02d}") for i in range(len(band))]
        ml = list(neb.image_energies)
    settings = GpawSettings(ecut=args.ecut, kpts=(1, 1, 1))
    factory = gpaw_calculator_factory(images[0], kind="bulk", charge=1, settings=settings)
    doc = dft_check_images(
        images,
        factory,
        labels=labels,
        ml_energies=ml,
        directory=args.out / f"gpaw-{args.ecut:g}",
        extra={"ml": "chgnet", "dft": "gpaw", "charge": 1, "gpaw": settings.as_dict()},
    )
    w2 = time.perf_counter()
    print(doc.table())
    print(
        f"GPAW CPU: {', '.join(f'{c:.0f} s' for c in doc.cpu_seconds)}; wall total {w2 - w0:.0f} s"
    )
    print(
        json.dumps(
            {
                "system": "V_Br+ hop, 2x2x2 CsPbBr3 (39 atoms), Gamma, PW "
                f"{args.ecut:g} eV, CHGNet geometries",
                "ml_barrier_eV": round(float(doc.ml_barrier or 0.0), 4),
                "dft_barrier_eV": round(doc.dft_barrier, 4),
                "ml_minus_dft_eV": round(float(doc.difference or 0.0), 4),
                "dft_final_minus_initial_eV": round(doc.dft_relative[-1], 4),
                "ml_final_minus_initial_eV": round(doc.ml_relative[-1], 4),
                "cpu_chgnet_s": round(c1 - c0, 1),
                "cpu_gpaw_s": [round(c, 1) for c in doc.cpu_seconds],
                "chgnet_band_converged": neb.converged,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
