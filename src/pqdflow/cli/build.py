"""``pqdflow build``: write the paper's model set (structures, pictures, manifest)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pqdflow.errors import InputError, OverwriteError
from pqdflow.fileio import atomic_directory, atomic_write_json
from pqdflow.provenance import provenance

__all__ = ["MANIFEST", "register", "run_build", "write_model_set"]

#: Name of the manifest file inside the output folder.
MANIFEST = "manifest.json"
_MARKER = "build_info.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``build`` subcommand."""
    parser = subparsers.add_parser(
        "build",
        help="write the paper's model set of structures (extxyz + PNG + manifest.json)",
        description=(
            "Build the model set: bulk, clean (001) slabs (CsX and PbX2 terminated), each "
            "ligand's reference molecule, each ligand adsorbed, the control (OAc+OAm) and "
            "treated (AnHI+TMSBr) surfaces and NEB endpoint pairs for bulk and surface "
            "V_Br hops. Writes one extxyz and one PNG (top + side view) per structure and "
            "DIR/manifest.json."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (new or empty)")
    parser.add_argument(
        "--x",
        dest="x",
        type=float,
        nargs="+",
        default=[3.0],
        metavar="X",
        help="compositions CsPbBr(x)I(3-x), Br per formula unit in [0, 3] (default: 3)",
    )
    parser.add_argument(
        "--chain-length",
        type=int,
        default=None,
        metavar="N",
        help="carbons kept in the OAm/OAc chains (default 4; 18 = full oleyl)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of mixed-halide arrangements")
    parser.add_argument(
        "--no-png", action="store_true", help="skip the pictures (faster; manifest png=null)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an earlier pqdflow build in --out"
    )
    parser.set_defaults(func=run_build)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / _MARKER).is_file():
            raise OverwriteError(
                f"--out {out} is not empty and holds no earlier pqdflow build; "
                "choose a new or empty folder"
            )
        if not force:
            raise OverwriteError(
                f"--out {out} already holds a pqdflow build; use --force to replace it"
            )


def write_model_set(
    out: str | Path,
    *,
    x_values: list[float] | tuple[float, ...] = (3.0,),
    chain_length: int | None = None,
    seed: int = 0,
    png: bool = True,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Build the model set and write it to ``out``; return the manifest entries.

    Everything is built and validated in memory first; the folder is then assembled in a
    temporary sibling and renamed into place, so a failure leaves nothing behind.
    """
    from pqdflow.structures.io import write_structure
    from pqdflow.structures.model_set import build_model_set
    from pqdflow.structures.render import render_png

    out = Path(out)
    _check_out(out, force)
    entries = build_model_set(tuple(x_values), chain_length=chain_length, seed=seed)
    manifest: list[dict[str, Any]] = []
    for entry in entries:
        fixed = sorted({int(i) for c in entry.atoms.constraints for i in c.get_indices()})
        manifest.append(
            {
                "name": entry.name,
                "file": f"{entry.name}.extxyz",
                "png": f"{entry.name}.png" if png else None,
                "kind": entry.kind,
                "formula": entry.atoms.get_chemical_formula(mode="hill"),
                "n_atoms": len(entry.atoms),
                "n_fixed": len(fixed),
                "ligands": list(entry.ligands),
                "termination": entry.termination,
                "x": entry.x,
                "meta": entry.meta,
            }
        )
    json.dumps(manifest)  # validate: everything JSON-serialisable before writing
    with atomic_directory(out, force=force) as tmp:
        for entry, row in zip(entries, manifest, strict=True):
            write_structure(entry.atoms, tmp / row["file"])
            if png:
                render_png(entry.atoms, tmp / row["png"], title=entry.name)
        atomic_write_json(tmp / MANIFEST, manifest)
        atomic_write_json(
            tmp / _MARKER,
            provenance(
                command="pqdflow build",
                x_values=list(x_values),
                chain_length=chain_length,
                seed=seed,
                n_structures=len(manifest),
            ),
        )
    return manifest


def run_build(args: argparse.Namespace) -> int:
    """Entry point of ``pqdflow build``."""
    start = time.perf_counter()
    manifest = write_model_set(
        args.out,
        x_values=list(args.x),
        chain_length=args.chain_length,
        seed=args.seed,
        png=not args.no_png,
        force=args.force,
    )
    elapsed = time.perf_counter() - start
    kinds: dict[str, int] = {}
    for row in manifest:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in kinds.items())
    print(f"wrote {len(manifest)} structures ({summary}) to {args.out} in {elapsed:.1f} s")
    print(f"manifest: {Path(args.out) / MANIFEST}")
    return 0
