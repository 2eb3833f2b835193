"""The input set of a planned calculation: one function for the dry run and the VASP backend.

A calculation's INCAR must not depend on the route that writes it. :func:`input_set_for`
and :func:`neb_input_set_for` turn a planned :class:`~pqdflow.documents.plan.CalcSpec` /
:class:`~pqdflow.documents.plan.NebSpec` and the study's :class:`VaspInputOptions` into a
:class:`~pqdflow.workflows.vasp.inputsets.VaspInputSet`: the kind's preset, the study's
k-point density, dispersion and per-kind INCAR overrides, the tighter EDIFFG of NEB
endpoints and the cell's net charge (NELECT of a V_Br+ vacancy cell). The dry run
(:func:`~pqdflow.workflows.vasp.dryrun.write_study_inputs`) and
:class:`~pqdflow.workflows.vasp.backend.VaspBackend` (local or inside a Firework) both call
them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pqdflow.documents.plan import CalcSpec, NebSpec, StudyPlan, jsonable
from pqdflow.errors import InputSetError
from pqdflow.workflows.vasp.incar import validate_incar
from pqdflow.workflows.vasp.inputsets import VaspInputSet, get_input_set

__all__ = ["VaspInputOptions", "input_set_for", "neb_input_set_for"]

_KINDS = ("bulk", "slab", "adsorbed", "molecule", "neb")


@dataclass(frozen=True)
class VaspInputOptions:
    """The study's VASP choices shared by every calculation (the ``inputs`` of a study).

    Attributes
    ----------
    kpoint_density
        k-points per 1/Å of reciprocal-vector length; ``None`` keeps the preset's (25).
    dispersion
        ``"d3bj"`` adds Grimme D3(BJ) (IVDW 12); ``"none"`` (default) adds nothing;
        ``"auto"`` follows each calculation's planned ``meta["dispersion"]``. A
        calculation's own ``meta["dispersion"]`` (set by the planner) always wins.
    vtst
        NEB with the VTST tools (climbing image) or plain VASP.
    neb_endpoint_ediffg
        EDIFFG of NEB endpoint relaxations (eV/Å, negative); ``None`` keeps the preset's.
    incar_overrides
        Per-kind absolute INCAR overrides (``{"slab": {"ISYM": 0}, "neb": {...}}``);
        ``TAG: None`` removes a tag.

    Raises
    ------
    InputSetError
        A bad value or an unknown calculation kind in ``incar_overrides``.
    """

    kpoint_density: float | None = None
    dispersion: Literal["none", "d3bj", "auto"] = "none"
    vtst: bool = True
    neb_endpoint_ediffg: float | None = -0.01
    incar_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.incar_overrides) - set(_KINDS))
        if unknown:
            raise InputSetError(
                f"INCAR overrides for unknown calculation kinds {unknown}; allowed: {list(_KINDS)}"
            )
        overrides = {k: validate_incar(dict(v)) for k, v in self.incar_overrides.items() if v}
        object.__setattr__(self, "incar_overrides", MappingProxyType(overrides))
        ediffg = self.neb_endpoint_ediffg
        if ediffg is not None and not (math.isfinite(ediffg) and ediffg < 0):
            raise InputSetError(
                f"neb_endpoint_ediffg = {ediffg!r}; must be a negative force criterion (eV/Å)"
            )

    @classmethod
    def from_plan(cls, plan: StudyPlan) -> VaspInputOptions:
        """Return the options a plan was made with (``plan.meta["inputs"]``, INCAR overrides)."""
        return cls.from_dict({**plan.meta.get("inputs", {}), "incar": plan.incar_overrides})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VaspInputOptions:
        """From a study's ``inputs`` section (``incar`` or ``incar_overrides`` per kind).

        Raises
        ------
        InputSetError
            An unknown key (the message lists the allowed ones).
        """
        data = dict(data)
        overrides = data.pop("incar", None) or data.pop("incar_overrides", None) or {}
        allowed = {"kpoint_density", "dispersion", "vtst", "neb_endpoint_ediffg"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InputSetError(
                f"unknown VASP input option(s) {unknown}; allowed: {sorted(allowed)} and "
                "incar_overrides"
            )
        kpd = data.get("kpoint_density")
        return cls(
            kpoint_density=None if kpd is None else float(kpd),
            dispersion=data.get("dispersion") or "none",
            vtst=bool(data.get("vtst", True)),
            neb_endpoint_ediffg=data.get("neb_endpoint_ediffg"),
            incar_overrides={k: dict(v) for k, v in dict(overrides).items() if v},
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data; :meth:`from_dict` reads it back."""
        return {
            "kpoint_density": self.kpoint_density,
            "dispersion": self.dispersion,
            "vtst": self.vtst,
            "neb_endpoint_ediffg": self.neb_endpoint_ediffg,
            "incar_overrides": jsonable({k: dict(v) for k, v in self.incar_overrides.items()}),
        }

    def _common(self, planned: Any = None) -> dict[str, Any]:
        dispersion = planned if planned in ("none", "d3bj") else self.dispersion
        common: dict[str, Any] = {"dispersion": "none" if dispersion == "auto" else dispersion}
        if self.kpoint_density is not None:
            common["kpoint_density"] = float(self.kpoint_density)
        return common


def input_set_for(calc: CalcSpec, options: VaspInputOptions) -> VaspInputSet:
    """Return the input set of one planned relaxation.

    The kind's preset (bulk with ``relax_cell`` -> ISIF 3, else ISIF 2), the study's k-point
    density and dispersion, and its INCAR overrides for that kind; NEB endpoints get
    ``EDIFFG = neb_endpoint_ediffg`` unless the study overrides EDIFFG; the cell's net charge
    (``calc.charge``, e.g. +1 for V_Br+) sets NELECT. A calculation in an implicit solvent
    (``calc.meta["solvent"]``, ``ligands.references: solvent``) gets VASPsol's LSOL, EB_K
    (its permittivity) and TAU 0 (the cavitation term is fitted to water), unless the study
    overrides them; it needs a VASPsol-patched VASP.
    """
    overrides = dict(options.incar_overrides.get(calc.kind, {}))
    ediffg = options.neb_endpoint_ediffg
    if calc.is_endpoint and ediffg is not None and "EDIFFG" not in overrides:
        overrides["EDIFFG"] = float(ediffg)
    solvent = calc.meta.get("solvent")
    if solvent:  # VASPsol; TAU 0: the cavitation term is parameterised for water only
        for tag, value in (("LSOL", True), ("EB_K", float(solvent["epsilon"])), ("TAU", 0.0)):
            overrides.setdefault(tag, value)
    return get_input_set(
        calc.kind,
        relax_cell=calc.relax_cell,
        incar_overrides=overrides,
        charge=calc.charge,
        **options._common(calc.meta.get("dispersion")),
    )


def neb_input_set_for(neb: NebSpec, host_kind: str, options: VaspInputOptions) -> VaspInputSet:
    """Return the NEB input set of ``neb`` whose endpoints are of kind ``host_kind``.

    ``bulk`` endpoints give the bulk NEB preset, anything else the slab one; the VTST switch,
    the study's NEB INCAR overrides and the cells' net charge (``neb.charge``) apply.
    """
    return get_input_set(
        "neb",
        host="bulk" if host_kind == "bulk" else "slab",
        vtst=options.vtst,
        incar_overrides=dict(options.incar_overrides.get("neb", {})),
        charge=neb.charge,
        **options._common(neb.meta.get("dispersion")),
    )
