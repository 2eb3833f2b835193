"""The ``vasp`` backend: write inputs, run VASP under custodian, parse into documents.

:class:`VaspBackend` implements the backend protocol of :mod:`pqdflow.workflows.backends`,
so the local runner and the FireWorks tasks treat VASP like any other backend:

* ``relax``: :func:`~pqdflow.workflows.vasp.calc_inputs.input_set_for` (the same function the
  dry run uses: NEB endpoints with the tighter ``neb_endpoint_ediffg``, charged vacancy cells
  with their NELECT) -> :func:`~pqdflow.workflows.vasp.inputsets.write_vasp_inputs` ->
  custodian (``gamma_vasp_cmd`` for molecules) ->
  :func:`~pqdflow.analysis.vasp.parse_calculation` ->
  :class:`~pqdflow.documents.results.RelaxDoc` (energy = energy(sigma->0); the relaxed
  structure back in the plan's atom order, with its constraints).
* ``neb``: tight-IDPP band between the relaxed endpoints ->
  :func:`~pqdflow.workflows.vasp.calc_inputs.neb_input_set_for` -> ``write_neb_inputs`` ->
  custodian ``VaspNEBJob`` -> :func:`~pqdflow.analysis.neb_parse.parse_neb` with the endpoint
  energies of the relaxations -> :class:`~pqdflow.documents.results.NebDoc`.

A folder that already holds a finished, converged result is parsed, not rerun (a relaunch
after a lost run resumes); a folder with an unfinished attempt is moved aside to
``<name>.bak-<time>`` and started again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import write as ase_write

from pqdflow.documents.plan import CalcSpec, NebSpec
from pqdflow.documents.results import RESULT_FILE, NebDoc, RelaxDoc
from pqdflow.errors import CalculationFailed, InputError
from pqdflow.fileio import find_outputs
from pqdflow.provenance import provenance
from pqdflow.workflows.vasp.calc_inputs import VaspInputOptions, input_set_for, neb_input_set_for
from pqdflow.workflows.vasp.custodian_jobs import (
    CustodianSettings,
    parse_command,
    run_vasp_custodian,
)
from pqdflow.workflows.vasp.kpoints import poscar_order

__all__ = ["VaspBackend", "in_plan_order"]


def in_plan_order(written: Atoms, planned: Atoms) -> Atoms:
    """Return VASP's structure ``written`` (POSCAR order) in the order of ``planned``.

    POSCAR groups atoms by element (:func:`~pqdflow.workflows.vasp.kpoints.poscar_order`);
    the plan's indices (a hopping halide, a ligand's atoms) refer to the planned order. The
    planned structure's constraints and ``info`` are kept.

    Raises
    ------
    CalculationFailed
        If the outputs hold other atoms than the inputs.
    """
    order = poscar_order(planned)
    symbols = [planned.get_chemical_symbols()[i] for i in order]
    if written.get_chemical_symbols() != symbols:
        raise CalculationFailed(
            f"VASP outputs hold {written.get_chemical_formula()} ({len(written)} atoms) but the "
            f"inputs were {planned.get_chemical_formula()} ({len(planned)} atoms)"
        )
    out = planned.copy()
    positions = np.empty_like(planned.positions)
    positions[order] = written.positions
    out.set_cell(written.cell, scale_atoms=False)
    out.positions = positions
    return out


class VaspBackend:
    """VASP under custodian, with pqdflow's input sets and parsers.

    Parameters
    ----------
    vasp_cmd
        Command for periodic calculations (list, or a string split with shlex; no shell).
    gamma_vasp_cmd
        Command of the Gamma-only build, used for molecules (defaults to ``vasp_cmd``).
    custodian
        Custodian settings (polling, error limits, wall time).
    inputs
        The study's VASP input options (k-point density, dispersion, VTST, endpoint EDIFFG,
        per-kind INCAR overrides), as :class:`VaspInputOptions` or its dict.
    """

    name = "vasp"

    def __init__(
        self,
        vasp_cmd: str | Sequence[str],
        gamma_vasp_cmd: str | Sequence[str] | None = None,
        *,
        custodian: CustodianSettings | None = None,
        inputs: VaspInputOptions | Mapping[str, Any] | None = None,
    ) -> None:
        self.vasp_cmd = parse_command(vasp_cmd, what="vasp_cmd")
        self.gamma_vasp_cmd = (
            parse_command(gamma_vasp_cmd, what="gamma_vasp_cmd")
            if gamma_vasp_cmd
            else list(self.vasp_cmd)
        )
        self.custodian = custodian or CustodianSettings()
        if inputs is None:
            inputs = VaspInputOptions()
        elif not isinstance(inputs, VaspInputOptions):
            inputs = VaspInputOptions.from_dict(inputs)
        self.inputs = inputs

    def __repr__(self) -> str:
        return f"VaspBackend(vasp_cmd={self.vasp_cmd!r})"

    def describe(self) -> dict[str, Any]:
        """Backend name, commands and settings (JSON-ready)."""
        return {
            "backend": self.name,
            "vasp_cmd": list(self.vasp_cmd),
            "gamma_vasp_cmd": list(self.gamma_vasp_cmd),
            "custodian": self.custodian.__dict__.copy(),
            "inputs": self.inputs.as_dict(),
        }

    # ------------------------------------------------------------------ protocol
    def relax(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        """Relax ``spec.atoms`` with VASP in ``directory``; write and return the RelaxDoc.

        Raises
        ------
        CalculationFailed
            If custodian gives up, the finished run has no final energy, or its outputs hold
            other atoms than the inputs.
        """
        from pqdflow.analysis.vasp import parse_calculation
        from pqdflow.workflows.vasp.inputsets import write_vasp_inputs

        if spec.formula_units < 1:
            raise InputError(f"formula_units must be >= 1, got {spec.formula_units}")
        input_set = input_set_for(spec, self.inputs)
        directory = Path(directory)
        if not _finished_and_converged(directory):
            write_vasp_inputs(spec.atoms, directory, input_set, force=bool(find_outputs(directory)))
            cmd = self.gamma_vasp_cmd if spec.kind == "molecule" else self.vasp_cmd
            run_vasp_custodian(directory, vasp_cmd=cmd, settings=self.custodian)
        calc = parse_calculation(directory)
        if calc.energy_kind == "ml":
            raise CalculationFailed(
                f"{directory}: the last energy is a machine-learned force-field prediction "
                f"({calc.n_ml_steps} ML steps); a binding energy needs a DFT energy: switch "
                "ML_LMLFF off (or end the run with a DFT step) and rerun"
            )
        energy = (
            calc.energy_sigma0 if calc.energy_sigma0 is not None else calc.energy_without_entropy
        )
        if energy is None or not math.isfinite(energy):
            raise CalculationFailed(
                f"{directory}: VASP finished without a final energy ({calc.status})"
            )
        final = in_plan_order(calc.to_atoms(), spec.atoms)
        ase_write(directory / "final.extxyz", final, format="extxyz")
        doc = RelaxDoc(
            name=spec.name,
            backend=self.name,
            kind=spec.kind,
            role=spec.role,
            energy=float(energy),
            formula_units=int(spec.formula_units),
            energy_per_formula_unit=float(energy) / spec.formula_units,
            fmax=float(calc.max_force) if calc.max_force is not None else float("nan"),
            converged=bool(calc.converged_ionic) and calc.status == "ok",
            n_steps=int(calc.n_ionic_steps),
            n_force_calls=int(calc.n_ionic_steps),
            formula=final.get_chemical_formula(),
            cell=np.asarray(final.cell).tolist(),
            directory=str(directory.resolve()),
            structure_path="final.extxyz",
            trajectory_path="vasprun.xml",
            settings={
                "tight": spec.is_endpoint,
                "relax_cell": spec.relax_cell,
                "charge": spec.charge,
                "input_set": input_set.as_dict(),
            },
            meta=dict(spec.meta),
            provenance=provenance(
                backend=self.name, vasp_status=calc.status, parser=calc.parser_version
            ),
        )
        doc.write(directory / RESULT_FILE)
        return doc

    def neb(
        self,
        spec: NebSpec,
        initial: RelaxDoc,
        final: RelaxDoc,
        directory: Path,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> NebDoc:
        """Run a VTST (or plain) NEB between relaxed endpoints; write and return the NebDoc.

        Raises
        ------
        CalculationFailed
            If custodian gives up, or an image has no energy at the end.
        """
        from pqdflow.analysis.neb_parse import parse_neb
        from pqdflow.analysis.vasp import parse_calculation
        from pqdflow.structures.defects import interpolate_band
        from pqdflow.workflows.vasp.inputsets import write_neb_inputs

        n_images = spec.n_images
        if n_images < 1:
            raise InputError(f"n_images must be >= 1, got {n_images}")
        meta = dict(meta or {})
        input_set = neb_input_set_for(spec, initial.kind, self.inputs)
        directory = Path(directory)
        start, end = initial.read_structure(), final.read_structure()
        images = list(interpolate_band(start, end, n_images, method="idpp"))
        if not _band_finished(directory, n_images):
            write_neb_inputs(images, directory, input_set, force=bool(find_outputs(directory)))
            run_vasp_custodian(directory, vasp_cmd=self.vasp_cmd, neb=True, settings=self.custodian)
        e_initial, e_final = float(initial.energy), float(final.energy)
        parsed = parse_neb(directory, endpoint_energies=(e_initial, e_final))
        if parsed.barrier is None or any(e is None for e in parsed.energies):
            raise CalculationFailed(f"{directory}: NEB images without energies ({parsed.status})")
        barrier = parsed.barrier
        image_docs = [parse_calculation(directory / d) for d in parsed.image_dirs]
        climbing = parsed.climbing_image
        forces = [float(f) if f is not None else float("nan") for f in parsed.max_forces]
        others = [f for i, f in enumerate(forces, start=1) if i != climbing]
        tangential = [0.0, *(float(t or 0.0) for t in parsed.tangential_forces), 0.0]
        host = "bulk" if initial.kind == "bulk" else "slab"
        doc = NebDoc(
            path=spec.name,
            label=spec.label,
            backend=self.name,
            image_energies=[
                e_initial,
                *(float(e) for e in parsed.energies if e is not None),
                e_final,
            ],
            reaction_coordinate=[float(s) for s in barrier["reaction_coordinate"]],
            tangential_forces=tangential,
            barrier=barrier,
            Ea_eV=float(barrier["forward"]),
            Ea_reverse_eV=float(barrier["reverse"]),
            Ea_spline_eV=float(barrier["forward_spline"]),
            Ea_reverse_spline_eV=float(barrier["reverse_spline"]),
            n_images=len(parsed.energies),
            climbing_index=climbing,
            fmax=max(others) if others else float("nan"),
            fmax_climbing=forces[climbing - 1] if climbing else float("nan"),
            converged=parsed.status == "ok",
            n_force_calls=sum(d.n_ionic_steps for d in image_docs),
            n_steps=max((d.n_ionic_steps for d in image_docs), default=0),
            initial=initial.name,
            final=final.name,
            directory=str(directory.resolve()),
            band_path="band.extxyz",
            trajectory_path="vasprun.xml",
            settings={"host": host, "charge": spec.charge, "input_set": input_set.as_dict()},
            meta=meta,
            provenance=provenance(backend=self.name, neb_status=parsed.status),
        )
        band = [
            in_plan_order(d.to_atoms(), img) if d.structure else img
            for d, img in zip(image_docs, images[1:-1], strict=True)
        ]
        ase_write(directory / "band.extxyz", [images[0], *band, images[-1]], format="extxyz")
        doc.write(directory / RESULT_FILE)
        return doc


def _finished_and_converged(directory: Path) -> bool:
    """Whether ``directory`` holds a finished, converged VASP relaxation already."""
    if not (directory / "OUTCAR").is_file() and not (directory / "OUTCAR.gz").is_file():
        return False
    from pqdflow.analysis.vasp import parse_calculation

    calc = parse_calculation(directory)
    return calc.status == "ok" and bool(calc.converged_ionic)


def _band_finished(directory: Path, n_images: int) -> bool:
    """Whether ``directory`` holds a finished, converged band of ``n_images`` images."""
    if not directory.is_dir():
        return False
    from pqdflow.workflows.vasp.custodian_jobs import (
        NebImagesUnconvergedHandler,
        NebImagesValidator,
        image_dirs,
    )

    if len(image_dirs(directory)) != n_images:
        return False
    return not NebImagesValidator().check(
        str(directory)
    ) and not NebImagesUnconvergedHandler().check(str(directory))
