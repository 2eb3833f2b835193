"""Reaction channels of a silyl halide (TMSBr) next to its intact surface adduct.

The paper notes that TMSBr reacts with protic agents to give HBr, and trimethylsilyl
halides are halide donors (R3Si-X + RCOOH -> R3Si-OOCR + HX). :func:`plan_silyl_channels`
adds those steps to a plan as balanced reactions between planned calculations, each with
the channel named in ``meta["channel"]``:

* ``surface_exchange``: TMSBr + oleate on the CsX surface -> TMS ester + Br- back in the
  surface halide site (the clean slab);
* ``solution_acid``: TMSBr + RCOOH -> RCOO-Si(CH3)3 + HBr;
* ``solution_amine``: TMSBr + RNH2 -> RNH-Si(CH3)3 + HBr;
* ``etching``: HBr + oleate on the CsX surface -> RCOOH + Br- in the surface site (HBr
  strips the oleate);
* ``hbr_capture``: HBr + RNH2 -> RNH3+ Br- (the OAm ion pair).

The intact adduct (TMSBr atop a Pb of PbX2) stays the ligand's binding reaction, with
``meta["channel"] = "adduct"``. Each reaction is a
:class:`~pqdflow.documents.plan.BindingSpec` read as ``slab + ligands -> adsorbed +
released``: its first reactant stands in ``slab``, its first product in ``adsorbed``, so
the energy is computed, atom balance checked, by
:func:`~pqdflow.analysis.binding.compute_binding` like any binding energy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pqdflow.documents.plan import BindingSpec

if TYPE_CHECKING:
    from pqdflow.workflows.study.planner import _Planner

__all__ = ["SILYL_CHANNELS", "plan_silyl_channels"]

#: Channel name -> the reaction in words (OAc / OAm chains as in the study).
SILYL_CHANNELS: dict[str, str] = {
    "surface_exchange": "TMSBr + RCOO-(surface, CsX) -> RCOOSi(CH3)3 + Br-(surface)",
    "solution_acid": "TMSBr + RCOOH -> RCOOSi(CH3)3 + HBr",
    "solution_amine": "TMSBr + RNH2 -> RNHSi(CH3)3 + HBr",
    "etching": "HBr + RCOO-(surface, CsX) -> RCOOH + Br-(surface)",
    "hbr_capture": "HBr + RNH2 -> RNH3+ Br-",
}


def _molecule(planner: _Planner, species: str) -> str:
    from pqdflow.structures.ligands import build_reaction_species

    atoms = build_reaction_species(species, chain_length=planner.chain)
    meta = {"species": species, "chain_length": planner.chain}
    return planner.add(f"rx-{species}", "molecule", atoms, role="reference", meta=meta).name


def plan_silyl_channels(planner: _Planner, x: float) -> None:
    """Add the TMSBr channels of composition ``x`` to ``planner``.

    The channels are TMSBr's reactions with the control ligands, so they are planned when
    the study's single ligands include TMSBr, OAc and OAm. The surface steps need oleate
    (OAc) on the CsX termination; without it they are skipped with a note in
    ``plan.meta["skipped"]``. The adduct binding of TMSBr is labelled ``channel = "adduct"``.
    """
    if not {"TMSBr", "OAc", "OAm"} <= set(planner.study.ligands.names):
        return
    for spec in planner.bindings:
        if spec.meta.get("ligand") == "TMSBr":
            spec.meta["channel"] = "adduct"
    tmsbr = planner.ligand_reference("TMSBr")
    acid = planner.ligand_reference("OAc")
    pair = planner.ligand_reference("OAm")
    hbr = planner.reference_species("HBr")
    amine, ester, silylamine = (_molecule(planner, s) for s in ("amine", "tms_ester", "tms_amine"))
    tag = f"x{x:g}"
    reactions: list[tuple[str, str, str, str, dict[str, float], dict[str, float]]] = [
        # channel, label, first reactant, first product, other reactants, other products
        ("solution_acid", "TMSBr", acid, ester, {tmsbr: 1.0}, {hbr: 1.0}),
        ("solution_amine", "TMSBr", amine, silylamine, {tmsbr: 1.0}, {hbr: 1.0}),
        ("hbr_capture", "HBr", amine, pair, {hbr: 1.0}, {}),
    ]
    surface = f"ads-OAc-CsX-{tag}"
    if surface in planner.calcs and f"slab-CsX-{tag}" in planner.calcs:
        clean = f"slab-CsX-{tag}"
        reactions += [
            ("surface_exchange", "TMSBr", surface, clean, {tmsbr: 1.0}, {ester: 1.0}),
            ("etching", "HBr", surface, clean, {hbr: 1.0}, {acid: 1.0}),
        ]
    else:
        planner.skipped.append(
            f"TMSBr surface channels on {tag}: need OAc on the CsX termination "
            "(ligands.names with OAc, terminations with CsX)"
        )
    for channel, label, first_in, first_out, others_in, others_out in reactions:
        planner.add_reaction(
            BindingSpec(
                name=f"reaction-{channel}-{tag}",
                ligand=label,
                site=channel,
                adsorbed=first_out,
                slab=first_in,
                ligands=others_in,
                released=others_out,
                meta={"x": x, "channel": channel, "reaction": SILYL_CHANNELS[channel]},
            )
        )
