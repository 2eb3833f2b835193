"""``pqdflow vib``: saddle check and harmonic-TST hop rate of an NEB (partial Hessians).

Examples::

    pqdflow vib runs/neb/neb-bulk-VBr --backend mock --json
    pqdflow vib --initial A.extxyz --saddle S.extxyz --final B.extxyz --hop-index 12
    pqdflow vib runs/neb/neb-bulk-VBr --write-vasp vib-vasp      # dry run for a cluster
    pqdflow vib --from-vasp vib-vasp --temperature 330 --json    # after VASP ran there

With NEB_DIR the document is also saved as ``NEB_DIR/vib.json`` and its spectrum as
``NEB_DIR/vib_spectrum.png`` (``--no-save`` skips this), which ``pqdflow report`` picks up.
An existing ``vib.json`` is only replaced if it is a HopVibDoc (a previous ``pqdflow vib``)
or with ``--force``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ase.io import read

from pqdflow.analysis.rates import HopVibDoc, neb_vibrations
from pqdflow.analysis.report import VIB_DOC, VIB_SPECTRUM
from pqdflow.analysis.vibrations import (
    DEFAULT_DISPLACEMENT_A,
    DEFAULT_SHELL_CUTOFF_A,
    plot_vibrational_spectrum,
)
from pqdflow.errors import InputError, ParseError
from pqdflow.fileio import atomic_write_json

__all__ = ["register", "run_vib"]


def register(subparsers: Any) -> None:
    """Add the ``vib`` subcommand."""
    parser = subparsers.add_parser(
        "vib",
        help="saddle check, ZPE and hTST hop rate of an NEB from partial Hessians",
        description=(
            "Finite-displacement (phonopy) partial Hessians of the initial, climbing and final "
            "images of an NEB folder written by `pqdflow run` (or of three structure files): "
            "imaginary-mode counts, overlap of the saddle mode with the path, Vineyard "
            "prefactor, hop rate k(T) = nu* exp(-Ea/kT) and D = z k a^2 / (2d)."
        ),
    )
    parser.add_argument(
        "neb_dir", nargs="?", type=Path, help="NEB folder (result.json, band.extxyz)"
    )
    from pqdflow.workflows.backends import backend_names

    parser.add_argument(
        "--backend",
        default="chgnet",
        metavar="NAME",
        help=f"in-process backend for the Hessians ({', '.join(backend_names(in_process=True))}; "
        "default chgnet; mock is plumbing only); VASP through --write-vasp / --from-vasp",
    )
    parser.add_argument("--temperature", type=float, default=300.0, help="device temperature (K)")
    parser.add_argument("--json", action="store_true", help="print the document as JSON")
    parser.add_argument("--output", type=Path, help="also write the JSON document here")
    parser.add_argument("--plot", type=Path, help="write a spectrum picture (PNG) here")
    parser.add_argument("--hop-index", type=int, help="migrating atom (default: from the NEB)")
    parser.add_argument(
        "--cutoff", type=float, default=DEFAULT_SHELL_CUTOFF_A, help="neighbour shell (Å)"
    )
    parser.add_argument("--displacement", type=float, default=DEFAULT_DISPLACEMENT_A, help="δ (Å)")
    parser.add_argument(
        "--hops", type=int, default=8, help="equivalent hop destinations z (default 8)"
    )
    parser.add_argument("--dimension", type=int, default=3, help="dimension of the walk")
    parser.add_argument("--initial", type=Path, help="initial structure (instead of NEB_DIR)")
    parser.add_argument("--saddle", type=Path, help="saddle structure (instead of NEB_DIR)")
    parser.add_argument("--final", type=Path, help="final structure (instead of NEB_DIR)")
    parser.add_argument("--write-vasp", type=Path, help="write VASP displacement folders here")
    parser.add_argument("--from-vasp", type=Path, help="parse VASP displacement folders")
    parser.add_argument(
        "--force",
        action="store_true",
        help="move existing VASP outputs aside; replace a vib.json/png that is not ours",
    )
    parser.add_argument(
        "--no-save",
        action="store_true",
        help=f"do not save NEB_DIR/{VIB_DOC} and NEB_DIR/{VIB_SPECTRUM}",
    )
    parser.set_defaults(func=run_vib)


def _read(path: Path) -> Any:
    try:
        return read(path)
    except (OSError, ValueError, StopIteration) as exc:
        raise ParseError(path, f"cannot read structure: {exc}") from exc


def _images(args: argparse.Namespace) -> list[Any] | None:
    files = (args.initial, args.saddle, args.final)
    if any(files) and (args.neb_dir or not all(files)):
        raise InputError("give either NEB_DIR or all three of --initial, --saddle, --final")
    return [_read(p) for p in files] if all(files) else None


def _saved_paths(args: argparse.Namespace) -> tuple[Path, Path] | None:
    """``(NEB_DIR/vib.json, NEB_DIR/vib_spectrum.png)`` to save, after the overwrite check.

    Raises
    ------
    InputError
        A ``vib.json`` there that is not a HopVibDoc, or a spectrum PNG without our
        ``vib.json`` beside it (someone else's file), unless ``--force``.
    """
    if args.neb_dir is None or args.no_save or args.write_vasp is not None:
        return None
    doc_path, png_path = args.neb_dir / VIB_DOC, args.neb_dir / VIB_SPECTRUM
    ours = False
    if doc_path.exists():
        try:
            ours = json.loads(doc_path.read_text()).get("doc_type") == "HopVibDoc"
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours and not args.force:
            raise InputError(
                f"{doc_path} exists and is not a HopVibDoc from pqdflow vib; "
                "use --force to replace it or --no-save to leave it"
            )
    if png_path.exists() and not ours and not args.force:
        raise InputError(
            f"{png_path} exists without a pqdflow vib document beside it; "
            "use --force to replace it or --no-save to leave it"
        )
    return doc_path, png_path


def _write_plot(doc: HopVibDoc, path: Path) -> None:
    """Draw the spectrum to a temporary sibling, then rename it into place."""
    tmp = path.with_name(f".{path.stem}.tmp.png")
    plot_vibrational_spectrum(doc, tmp)
    tmp.replace(path)


def _summary(doc: HopVibDoc) -> str:
    def fmt(x: float | None, spec: str) -> str:
        return "n/a" if x is None else format(x, spec)

    lines = [
        f"{doc.label or 'hop'} ({doc.backend or '?'}): atoms {doc.indices}, "
        f"hop atom {doc.hop_index}",
        f"  imaginary modes  initial {doc.n_imaginary_initial}  saddle {doc.n_imaginary_saddle}"
        f"  final {doc.n_imaginary_final}  (|nu| < {doc.tolerance_THz} THz is noise)",
        f"  saddle mode {doc.saddle_frequency_THz:.3f} THz, |overlap with tangent| "
        f"{doc.saddle_mode_tangent_overlap:.3f}",
        f"  first-order saddle {doc.is_first_order_saddle}, endpoints minima "
        f"{doc.endpoints_are_minima}",
        f"  Ea {doc.Ea_eV:.4f} eV (ZPE-corrected {doc.Ea_zpe_eV:.4f} eV), "
        f"nu* {fmt(doc.prefactor_THz, '.3f')} THz, hop {doc.hop_length_A:.3f} Å",
        f"  k(300 K) {fmt(doc.rate_300K_per_s, '.3e')} 1/s, D(300 K) "
        f"{fmt(doc.D_300K_cm2_per_s, '.3e')} cm^2/s",
        f"  k({doc.temperature_K:g} K) {fmt(doc.rate_T_per_s, '.3e')} 1/s, "
        f"D({doc.temperature_K:g} K) {fmt(doc.D_T_cm2_per_s, '.3e')} cm^2/s",
    ]
    lines += [f"  note: {n}" for n in doc.notes]
    return "\n".join(lines)


def run_vib(args: argparse.Namespace) -> int:
    """Run ``pqdflow vib``; return the exit status."""
    from pqdflow.workflows.vasp import vib_inputs

    images = _images(args)
    saved = _saved_paths(args)
    if args.from_vasp is not None:
        if images is not None or args.neb_dir is not None:
            raise InputError("--from-vasp reads its own folder; give no NEB_DIR or structures")
        doc = vib_inputs.read_hop_vib_outputs(
            args.from_vasp,
            temperature_K=args.temperature,
            n_equivalent_hops=args.hops,
            dimension=args.dimension,
        )
    else:
        if images is None and args.neb_dir is None:
            raise InputError("give NEB_DIR, --initial/--saddle/--final, or --from-vasp")
        if args.write_vasp is not None:
            if images is None:
                images = vib_inputs.load_converged_band(args.neb_dir)[1]
            vib_inputs.write_hop_vib_inputs(
                images,
                args.write_vasp,
                hop_index=args.hop_index,
                climbing_index=1 if args.neb_dir is None else None,
                cutoff_A=args.cutoff,
                displacement_A=args.displacement,
                force=args.force,
            )
            print(f"wrote VASP displacement folders to {args.write_vasp}")
            return 0
        from pqdflow.workflows.backends import get_backend

        backend = get_backend(args.backend)
        make = getattr(backend, "calculator_factory", None)
        if make is None:
            raise InputError(
                f"--backend {args.backend} does not compute in this process; use "
                "--write-vasp DIR and --from-vasp DIR for VASP"
            )
        calculator = make()
        options: dict[str, Any] = {
            "cutoff_A": args.cutoff,
            "displacement_A": args.displacement,
            "temperature_K": args.temperature,
            "n_equivalent_hops": args.hops,
            "dimension": args.dimension,
            "backend": args.backend,
        }
        if images is not None:
            doc = neb_vibrations(
                images, calculator, hop_index=args.hop_index, climbing_index=1, **options
            )
        else:
            options.pop("backend")
            doc = vib_inputs.neb_folder_vibrations(
                args.neb_dir, calculator, backend=args.backend, hop_index=args.hop_index, **options
            )
    for doc_path in (args.output, saved[0] if saved else None):
        if doc_path is not None:
            atomic_write_json(doc_path, doc.as_dict())
    for png_path in (args.plot, saved[1] if saved else None):
        if png_path is not None:
            _write_plot(doc, png_path)
    print(json.dumps(doc.as_dict(), indent=2) if args.json else _summary(doc))
    if saved and not args.json:
        print(f"saved {saved[0]} and {saved[1]}")
    return 0
