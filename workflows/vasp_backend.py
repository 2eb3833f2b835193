"""The ``vasp`` backend: write inputs, run VASP under custodian, parse into documents.

:class:`VaspBackend` implements the engine's :class:`~pqdflow.workflows.backends.Backend`
protocol, so the runner and the FireWorks tasks treat VASP like any other backend:

* ``relax``: input set of the calculation kind (NEB endpoints with the tighter
  ``neb_endpoint_ediffg``) -> :func:`~pqdflow.workflows.inputsets.write_vasp_inputs` ->
  custodian (``gamma_vasp_cmd`` for molecules) -> :func:`~pqdflow.analysis.vasp.parse_calculation`
  -> :class:`~pqdflow.workflows.documents.RelaxDoc` (energy = energy(sigma->0)).
* ``neb``: tight-IDPP band between the relaxed endpoints -> ``write_neb_inputs`` -> custodian
  ``VaspNEBJob`` -> :func:`~pqdflow.analysis.neb_parse.parse_neb` with the endpoint energies
  of the relaxations -> :class:`~pqdflow.workflows.documents.NebDoc`.

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

from pqdflow.errors import CalculationFailed, InputError
from pqdflow.fileio import find_outputs
from pqdflow.provenance import provenance
from pqdflow.workflows.custodian_jobs import CustodianSettings, parse_command, run_vasp_custodian
from pqdflow.workflows.documents import NebDoc, RelaxDoc

__all__ = ["ENDPOINT_ROLES", "RESULT_FILE", "VaspBackend"]

#: Document written last into every calculation folder.
RESULT_FILE = "result.json"
#: Calculation roles that are NEB endpoints (relaxed with the tighter criterion).
ENDPOINT_ROLES = frozenset({"neb_initial", "neb_final"})


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
    incar_overrides
        Per-kind INCAR overrides of the study (``{"slab": {"ISYM": 0}, "neb": {...}}``).
    inputs
        The study's input options: ``kpoint_density`` (1/Å), ``dispersion``, ``vtst`` and
        ``neb_endpoint_ediffg`` (eV/Å, negative), as in ``Study.inputs``.
    """

    name = "vasp"

    def __init__(
        self,
        vasp_cmd: str | Sequence[str],
        gamma_vasp_cmd: str | Sequence[str] | None = None,
        *,
        custodian: CustodianSettings | None = None,
        incar_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> None:
        self.vasp_cmd = parse_command(vasp_cmd, what="vasp_cmd")
        self.gamma_vasp_cmd = (
            parse_command(gamma_vasp_cmd, what="gamma_vasp_cmd")
            if gamma_vasp_cmd
            else list(self.vasp_cmd)
        )
        self.custodian = custodian or CustodianSettings()
        self.incar_overrides = {k: dict(v) for k, v in (incar_overrides or {}).items()}
        self.inputs = dict(inputs or {})
        allowed = {"kpoint_density", "dispersion", "vtst", "neb_endpoint_ediffg"}
        unknown = sorted(set(self.inputs) - allowed)
        if unknown:
            raise InputError(f"unknown VASP input option(s) {unknown}; allowed: {sorted(allowed)}")

    def __repr__(self) -> str:
        return f"VaspBackend(vasp_cmd={self.vasp_cmd!r})"

    def describe(self) -> dict[str, Any]:
        """Backend name, commands and settings (JSON-ready)."""
        return {
            "backend": self.name,
            "vasp_cmd": list(self.vasp_cmd),
            "gamma_vasp_cmd": list(self.gamma_vasp_cmd),
            "custodian": self.custodian.__dict__.copy(),
            "incar_overrides": self.incar_overrides,
            "inputs": self.inputs,
        }

    # ------------------------------------------------------------------ input sets
    def _common(self) -> dict[str, Any]:
        common: dict[str, Any] = {}
        if self.inputs.get("kpoint_density") is not None:
            common["kpoint_density"] = float(self.inputs["kpoint_density"])
        if self.inputs.get("dispersion") is not None:
            common["dispersion"] = self.inputs["dispersion"]
        return common

    def input_set(self, kind: str, *, relax_cell: bool, tight: bool) -> Any:
        """Return the VASP input set of one relaxation (``tight`` for NEB endpoints)."""
        from pqdflow.workflows.inputsets import get_input_set

        overrides = dict(self.incar_overrides.get(kind, {}))
        if tight and "EDIFFG" not in overrides:
            overrides["EDIFFG"] = float(self.inputs.get("neb_endpoint_ediffg", -0.01))
        return get_input_set(
            kind, relax_cell=relax_cell, incar_overrides=overrides, **self._common()
        )

    def neb_input_set(self, host: str) -> Any:
        """Return the NEB input set for a ``bulk`` or ``slab`` host."""
        from pqdflow.workflows.inputsets import get_input_set

        return get_input_set(
            "neb",
            host=host,
            vtst=bool(self.inputs.get("vtst", True)),
            incar_overrides=dict(self.incar_overrides.get("neb", {})),
            **self._common(),
        )

    # ------------------------------------------------------------------ protocol
    def relax(
        self,
        atoms: Atoms,
        directory: Path,
        *,
        name: str,
        kind: str = "slab",
        role: str = "model",
        relax_cell: bool = False,
        formula_units: int = 1,
        tight: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> RelaxDoc:
        """Relax ``atoms`` with VASP in ``directory``; write and return the RelaxDoc.

        Raises
        ------
        CalculationFailed
            If custodian gives up, or the finished run has no final energy.
        """
        from pqdflow.analysis.vasp import parse_calculation
        from pqdflow.workflows.inputsets import write_vasp_inputs

        if formula_units < 1:
            raise InputError(f"formula_units must be >= 1, got {formula_units}")
        tight = tight or role in ENDPOINT_ROLES
        input_set = self.input_set(kind, relax_cell=relax_cell, tight=tight)
        directory = Path(directory)
        if not _finished_and_converged(directory):
            write_vasp_inputs(atoms, directory, input_set, force=bool(find_outputs(directory)))
            cmd = self.gamma_vasp_cmd if kind == "molecule" else self.vasp_cmd
            run_vasp_custodian(directory, vasp_cmd=cmd, settings=self.custodian)
        calc = parse_calculation(directory)
        energy = (
            calc.energy_sigma0 if calc.energy_sigma0 is not None else calc.energy_without_entropy
        )
        if energy is None or not math.isfinite(energy):
            raise CalculationFailed(
                f"{directory}: VASP finished without a final energy ({calc.status})"
            )
        final = calc.to_atoms()
        final.info.update(atoms.info)
        ase_write(directory / "final.extxyz", final, format="extxyz")
        doc = RelaxDoc(
            name=name,
            backend=self.name,
            kind=kind,
            role=role,
            energy=float(energy),
            formula_units=int(formula_units),
            energy_per_formula_unit=float(energy) / formula_units,
            fmax=float(calc.max_force) if calc.max_force is not None else float("nan"),
            converged=bool(calc.converged_ionic) and calc.status == "ok",
            n_steps=int(calc.n_ionic_steps),
            n_force_calls=int(calc.n_ionic_steps),
            formula=final.get_chemical_formula(),
            cell=np.asarray(final.cell).tolist(),
            directory=str(directory.resolve()),
            structure_path="final.extxyz",
            trajectory_path="vasprun.xml",
            settings={"tight": tight, "relax_cell": relax_cell, "input_set": input_set.as_dict()},
            meta=dict(meta or {}),
            provenance=provenance(
                backend=self.name, vasp_status=calc.status, parser=calc.parser_version
            ),
        )
        doc.write(directory / RESULT_FILE)
        return doc

    def neb(
        self,
        initial: Atoms,
        final: Atoms,
        directory: Path,
        *,
        path: str,
        label: str,
        n_images: int,
        e_initial: float,
        e_final: float,
        initial_name: str,
        final_name: str,
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
        from pqdflow.workflows.inputsets import write_neb_inputs

        if n_images < 1:
            raise InputError(f"n_images must be >= 1, got {n_images}")
        meta = dict(meta or {})
        host = (
            "bulk" if meta.get("host") == "bulk" or initial.info.get("kind") == "bulk" else "slab"
        )
        input_set = self.neb_input_set(host)
        directory = Path(directory)
        images = list(interpolate_band(initial, final, n_images, method="idpp"))
        if not _band_finished(directory, n_images):
            write_neb_inputs(images, directory, input_set, force=bool(find_outputs(directory)))
            run_vasp_custodian(directory, vasp_cmd=self.vasp_cmd, neb=True, settings=self.custodian)
        parsed = parse_neb(directory, endpoint_energies=(float(e_initial), float(e_final)))
        if parsed.barrier is None or any(e is None for e in parsed.energies):
            raise CalculationFailed(f"{directory}: NEB images without energies ({parsed.status})")
        barrier = parsed.barrier
        image_docs = [parse_calculation(directory / d) for d in parsed.image_dirs]
        climbing = parsed.climbing_image
        forces = [float(f) if f is not None else float("nan") for f in parsed.max_forces]
        others = [f for i, f in enumerate(forces, start=1) if i != climbing]
        tangential = [0.0, *(float(t or 0.0) for t in parsed.tangential_forces), 0.0]
        doc = NebDoc(
            path=path,
            label=label,
            backend=self.name,
            image_energies=[
                float(e_initial),
                *(float(e) for e in parsed.energies if e is not None),
                float(e_final),
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
            initial=initial_name,
            final=final_name,
            directory=str(directory.resolve()),
            band_path="band.extxyz",
            trajectory_path="vasprun.xml",
            settings={"host": host, "input_set": input_set.as_dict()},
            meta=meta,
            provenance=provenance(backend=self.name, neb_status=parsed.status),
        )
        band = [
            d.to_atoms() if d.structure else img
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
    from pqdflow.workflows.custodian_jobs import (
        NebImagesUnconvergedHandler,
        NebImagesValidator,
        image_dirs,
    )

    if len(image_dirs(directory)) != n_images:
        return False
    return not NebImagesValidator().check(
        str(directory)
    ) and not NebImagesUnconvergedHandler().check(str(directory))
