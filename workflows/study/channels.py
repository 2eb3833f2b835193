"""Reaction channels of a silyl halide (TMSBr, TMSI) next to its intact surface adduct.

The paper notes that TMSBr reacts with protic agents to give HBr, and trimethylsilyl
halides are halide donors (R3Si-X + RCOOH -> R3Si-OOCR + HX). :func:`plan_silyl_channels`
adds those steps to a plan as balanced reactions between planned calculations, for every
silyl halide of the study's ligands (:data:`~pqdflow.structures.ligands.SILYL_HALIDES`:
TMSBr donates Br, TMSI donates I), each with the channel named in ``meta["channel"]`` and
the silyl halide in ``meta["silyl"]``:

* ``surface_exchange``: TMSX + oleate on the CsX surface -> TMS ester + X- back in the
  surface halide site the oleate held (the clean slab for X = Br; for X = I the clean slab
  with that one site iodide, planned as its own calculation);
* ``solution_acid``: TMSX + RCOOH -> RCOO-Si(CH3)3 + HX;
* ``solution_amine``: TMSX + RNH2 -> RNH-Si(CH3)3 + HX;
* ``etching``: HX + oleate on the CsX surface -> RCOOH + X- in the surface site (HX strips
  the oleate);
* ``hbr_capture`` / ``hi_capture``: HX + RNH2 -> RNH3+ X- (for Br the OAm reference pair).

The intact adduct (the silyl halide atop a Pb of PbX2) stays the ligand's binding reaction,
with ``meta["channel"] = "adduct"``. Each reaction is a
:class:`~pqdflow.documents.plan.BindingSpec` read as ``slab + ligands -> adsorbed +
released``: its first reactant stands in ``slab``, its first product in ``adsorbed``, so
the energy is computed, atom balance checked, by
:func:`~pqdflow.analysis.binding.compute_binding` like any binding energy. Reaction names
are ``reaction-<channel>-x<x>`` for TMSBr (as before TMSI existed) and
``reaction-<channel>-<silyl>-x<x>`` for the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pqdflow.documents.plan import BindingSpec

if TYPE_CHECKING:
    from pqdflow.workflows.study.planner import _Planner

__all__ = ["SILYL_CHANNELS", "channel_text", "plan_silyl_channels"]

#: Channel name -> the reaction in words, for TMSBr (OAc / OAm chains as in the study);
#: :func:`channel_text` gives it for another silyl halide.
SILYL_CHANNELS: dict[str, str] = {
    "surface_exchange": "TMSBr + RCOO-(surface, CsX) -> RCOOSi(CH3)3 + Br-(surface)",
    "solution_acid": "TMSBr + RCOOH -> RCOOSi(CH3)3 + HBr",
    "solution_amine": "TMSBr + RNH2 -> RNHSi(CH3)3 + HBr",
    "etching": "HBr + RCOO-(surface, CsX) -> RCOOH + Br-(surface)",
    "hbr_capture": "HBr + RNH2 -> RNH3+ Br-",
}


def channel_text(channel: str, silyl: str, halide: str) -> str:
    """Return the reaction of ``channel`` in words for the silyl halide ``silyl`` (halide X)."""
    text = SILYL_CHANNELS["hbr_capture" if channel.endswith("_capture") else channel]
    return text.replace("TMSBr", silyl).replace("Br", halide)


def _molecule(planner: _Planner, species: str) -> str:
    from pqdflow.structures.ligands import build_reaction_species

    atoms = build_reaction_species(species, chain_length=planner.chain)
    meta = {"species": species, "chain_length": planner.chain}
    return planner.add(f"rx-{species}", "molecule", atoms, role="reference", meta=meta).name


def _substituted_slab(planner: _Planner, x: float, site_index: int, halide: str) -> str:
    """Plan the clean CsX slab with the X_site ``site_index`` holding ``halide``."""
    from pqdflow.structures.adsorption import surface_sites

    clean = planner.slab(x, "CsX")
    occupant = surface_sites(clean)["X_site"][site_index].occupant
    assert occupant is not None  # CsX X_sites hold the surface halides
    atoms = clean.copy()
    atoms.info = dict(clean.info)
    atoms[occupant].symbol = halide
    meta = {"x": x, "termination": "CsX", "substituted": {"site_index": site_index, "by": halide}}
    return planner.add(
        f"slab-CsX-x{x:g}-{halide}{site_index}", "slab", atoms, role="reaction_product", meta=meta
    ).name


def plan_silyl_channels(planner: _Planner, x: float) -> None:
    """Add the channels of every silyl halide of the study's ligands at composition ``x``.

    The channels are the silyl halide's reactions with the control ligands, so they are
    planned for each silyl halide among the study's single ligands when OAc and OAm are
    there too. The surface steps need oleate (OAc) on the CsX termination; without it they
    are skipped with a note in ``plan.meta["skipped"]``. The adduct binding of each silyl
    halide is labelled ``channel = "adduct"``.
    """
    from pqdflow.structures.ligands import SILYL_HALIDES

    names = planner.study.ligands.names
    silyls = [s for s in names if s in SILYL_HALIDES]
    if not silyls or not {"OAc", "OAm"} <= set(names):
        return
    tag = f"x{x:g}"
    surface, clean = f"ads-OAc-CsX-{tag}", f"slab-CsX-{tag}"
    for silyl in silyls:
        halide = SILYL_HALIDES[silyl]
        for spec in planner.bindings:
            if spec.meta.get("ligand") == silyl:
                spec.meta["channel"] = "adduct"
        reagent = planner.ligand_reference(silyl)
        acid = planner.ligand_reference("OAc")
        hx = planner.reference_species(f"H{halide}")
        amine, ester, silylamine = (
            _molecule(planner, s) for s in ("amine", "tms_ester", "tms_amine")
        )
        pair = (
            planner.ligand_reference("OAm")
            if halide == "Br"
            else _molecule(planner, "ammonium_iodide")
        )
        capture = f"h{halide.lower()}_capture"
        reactions: list[tuple[str, str, str, str, dict[str, float], dict[str, float]]] = [
            # channel, label, first reactant, first product, other reactants, other products
            ("solution_acid", silyl, acid, ester, {reagent: 1.0}, {hx: 1.0}),
            ("solution_amine", silyl, amine, silylamine, {reagent: 1.0}, {hx: 1.0}),
            (capture, f"H{halide}", amine, pair, {hx: 1.0}, {}),
        ]
        if surface in planner.calcs and clean in planner.calcs:
            product = clean
            if halide != "Br":  # the oleate's site gets the donated halide
                record = planner.calcs[surface].atoms.info["ligands"][0]
                product = _substituted_slab(planner, x, int(record["site_index"]), halide)
            reactions += [
                ("surface_exchange", silyl, surface, product, {reagent: 1.0}, {ester: 1.0}),
                ("etching", f"H{halide}", surface, product, {hx: 1.0}, {acid: 1.0}),
            ]
        else:
            planner.skipped.append(
                f"{silyl} surface channels on {tag}: need OAc on the CsX termination "
                "(ligands.names with OAc, terminations with CsX)"
            )
        suffix = tag if silyl == "TMSBr" else f"{silyl}-{tag}"
        for channel, label, first_in, first_out, others_in, others_out in reactions:
            planner.add_reaction(
                BindingSpec(
                    name=f"reaction-{channel}-{suffix}",
                    ligand=label,
                    site=channel,
                    adsorbed=first_out,
                    slab=first_in,
                    ligands=others_in,
                    released=others_out,
                    meta={
                        "x": x,
                        "channel": channel,
                        "silyl": silyl,
                        "reaction": channel_text(channel, silyl, halide),
                    },
                )
            )
