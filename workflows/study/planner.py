"""Planning a study: expand a validated :class:`~pqdflow.workflows.study.Study` into a plan.

:func:`plan_study` builds every structure a study needs (bulk, clean and passivated slabs,
single ligands, reference species, NEB endpoints) and collects them with the atom-balanced
binding reactions (:func:`balance_released`) and NEB paths into a
:class:`~pqdflow.documents.plan.StudyPlan`. Nothing here touches the disk.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from pqdflow.documents.plan import BindingSpec, CalcKind, CalcSpec, NebSpec, StudyPlan
from pqdflow.errors import InputError, StudyError
from pqdflow.structures.bulk import allowed_x

if TYPE_CHECKING:
    from pqdflow.workflows.study.schema import NebPath, Study

__all__ = [
    "HOST_START_TOLERANCE",
    "balance_released",
    "plan_study",
    "removed_prefix",
    "start_from_host",
]

#: Å: a planned structure starts from its relaxed NEB host (``meta["start_from_host"]``) when
#: its first atoms are the planned host's (less one) to within this: the host is rattled
#: (``neb.rattle``, 0.03 Å by default), the vacancy fills are built on the unrattled one.
HOST_START_TOLERANCE: float = 0.5


def removed_prefix(
    host: Atoms, atoms: Atoms, tolerance: float = HOST_START_TOLERANCE
) -> list[int] | None:
    """Host atoms missing from ``atoms``, if ``atoms`` starts with the rest of the host.

    ``atoms`` must begin with the host's atoms less some of them, in the host's order and
    within ``tolerance`` Å of their host positions (minimum image), everything after them
    appended; returns the host indices left out, or None where ``atoms`` is not built so.
    """
    from ase.geometry import find_mic

    removed: list[int] = []
    j = 0
    for i, atom in enumerate(host):
        if j < len(atoms) and atoms[j].symbol == atom.symbol:
            d, _ = find_mic(atoms.positions[j] - atom.position, host.cell, host.pbc)
            if float(np.linalg.norm(d)) <= tolerance:
                j += 1
                continue
        removed.append(i)
    if j != len(host) - len(removed) or j == 0:
        return None
    return removed


def start_from_host(
    host_name: str, host: Atoms, atoms: Atoms, removed: list[int] | None = None
) -> dict[str, Any]:
    """``meta["start_from_host"]`` of ``atoms`` built from ``host`` (empty if it is not).

    ``atoms`` must be the planned ``host`` less the ``removed`` atoms (found by
    :func:`removed_prefix` when None) in the host's order, positions within
    :data:`HOST_START_TOLERANCE` Å, the same in-plane cell, and any further atoms appended.
    """
    found = removed_prefix(host, atoms)
    if found is None or (removed is not None and sorted(found) != sorted(removed)):
        return {}
    if not np.allclose(host.cell[:2], atoms.cell[:2], atol=1e-6):
        return {}
    return {"start_from_host": {"host": host_name, "removed": [int(i) for i in found]}}


def _x_tag(x: float) -> str:
    """Readable, filesystem-safe composition label: 3.0 -> 'x3', 2.25 -> 'x2.25'."""
    return f"x{x:g}"


def _composition(atoms: Atoms) -> Counter[str]:
    return Counter(atoms.get_chemical_symbols())


def balance_released(
    consumed: Mapping[str, float],
    produced: Mapping[str, float],
    candidates: Mapping[str, Mapping[str, float]],
) -> dict[str, float]:
    """Released species that balance ``consumed -> produced + released``, atom by atom.

    Parameters
    ----------
    consumed, produced
        Element -> count on each side before the released species are added.
    candidates
        Species name -> element counts per formula unit, in order of preference.

    Returns
    -------
    dict
        Species -> non-negative coefficient (formula units); the smallest set of candidates
        (earliest in order among equals) that balances exactly; empty if already balanced.

    Raises
    ------
    StudyError
        If no non-negative combination of the candidates balances the reaction.
    """
    elements = sorted(set(consumed) | set(produced) | {e for c in candidates.values() for e in c})
    need = np.array([consumed.get(e, 0.0) - produced.get(e, 0.0) for e in elements], dtype=float)
    if np.allclose(need, 0.0):
        return {}
    names = list(candidates)
    matrix = np.array([[candidates[n].get(e, 0.0) for n in names] for e in elements], dtype=float)
    for size in range(1, len(names) + 1):
        for subset in combinations(range(len(names)), size):
            sub = matrix[:, subset]
            coeffs, *_ = np.linalg.lstsq(sub, need, rcond=None)
            if np.all(coeffs > 1e-9) and np.allclose(sub @ coeffs, need, atol=1e-8):
                return {names[i]: float(round(c, 9)) for i, c in zip(subset, coeffs, strict=True)}
    left = {e: float(v) for e, v in zip(elements, need, strict=True) if abs(v) > 1e-9}
    raise StudyError(
        f"cannot balance the binding reaction with the released species {names}; "
        f"left over (consumed - produced): {left}"
    )


def plan_study(study: Study) -> StudyPlan:
    """Expand a study into calculations, binding reactions and NEB paths (no disk access).

    Calculations: a cell-relaxed bulk per composition (binding compositions and ``neb.x``,
    on the smallest cell where x is exact); a clean slab per composition and termination;
    each ligand alone on the first study termination where it is closed-shell and the
    ``control`` / ``treated`` passivated surfaces on every clean slab; each ligand's neutral
    reference (role ``ligand_reference``); the released species the reactions need (CsBr /
    CsI bulk, HBr, HI, Br2, I2; role ``reference``); and both endpoints of every NEB path
    (role ``neb_initial`` / ``neb_final``, kind of their host, host rattled with the seed).
    Every binding reaction is atom-balanced by :func:`balance_released`.

    Raises
    ------
    UnknownLigandError, CompositionError, GeometryError, ClashError, StudyError
        From the structure builders or reaction balancing, before anything is written.
    """
    return _Planner(study).plan()


def _unbalanced(atoms: Atoms) -> str:
    """Why an adsorbed cell cannot be computed neutral and closed-shell ('' when it can)."""
    from pqdflow.structures.adsorption import is_closed_shell
    from pqdflow.structures.reactions import formal_charge

    charge = formal_charge(atoms)
    if charge:
        return f"fragments sum to formal charge {charge:+d} e (not charge-balanced)"
    if not is_closed_shell(atoms):
        return "odd electron count (open shell)"
    return ""


def _exact(x: float, supercell: tuple[int, int, int]) -> bool:
    return min(abs(x - a) for a in allowed_x(supercell)) < 1e-6


def _fu(atoms: Atoms) -> int:
    return int(atoms.info.get("formula_units", 1) or 1)


class _Planner:
    """Builds the plan of one study; holds the calculations collected so far."""

    def __init__(self, study: Study) -> None:
        from pqdflow.structures.ligands import (
            REDOX_SPECIES,
            REFERENCE_SPECIES,
            build_reference_species,
        )

        self.study = study
        self.chain = study.ligands.chain_length
        self.calcs: dict[str, CalcSpec] = {}
        self.bindings: list[BindingSpec] = []
        self.skipped: list[str] = []
        self.allow_redox = study.ligands.allow_redox
        self.hop_networks: dict[str, dict[str, Any]] = {}
        self.candidates = {
            name: dict(_composition(build_reference_species(name)))
            for name in REFERENCE_SPECIES
            if self.allow_redox or name not in REDOX_SPECIES
        }

    def add(self, name: str, kind: CalcKind, atoms: Atoms, **fields: Any) -> CalcSpec:
        if name not in self.calcs:
            fields.setdefault("formula_units", _fu(atoms))
            meta = fields.get("meta") or {}
            role = str(fields.get("role", "model"))
            on_host = kind in ("slab", "adsorbed") or role.startswith(("neb_", "vacancy_host"))
            if on_host and "x" in meta and self.study.slab.lattice == "relaxed":
                from pqdflow.structures.bulk import vegard_a

                # put on the backend's relaxed bulk lattice before it runs (steps.py)
                x = float(meta["x"])
                lattice = {"from": f"bulk-{_x_tag(x)}", "a_planned": round(vegard_a(x), 6)}
                fields["meta"] = {**meta, "lattice": lattice}
            self.calcs[name] = CalcSpec(name, kind, atoms, **fields)
        return self.calcs[name]

    def slab(self, x: float, termination: str) -> Atoms:
        from pqdflow.structures.slabs import build_slab

        opts = self.study.slab
        return build_slab(
            x=x,
            termination=termination,
            size=opts.size,
            layers=opts.layers,
            vacuum=opts.vacuum,
            fixed_layers=opts.fixed_layers,
            seed=self.study.seed,
        )

    def bulk(self, x: float) -> None:
        from pqdflow.structures.bulk import build_mixed_halide

        host = self.study.slab.host_supercell()
        cell = next((c for c in ((1, 1, 1), (2, 2, 2)) if _exact(x, c)), host)
        atoms = build_mixed_halide(x, cell, seed=self.study.seed)
        n = cell[0] * cell[1] * cell[2]
        meta = {"x": x, "supercell": list(cell)}
        self.add(f"bulk-{_x_tag(x)}", "bulk", atoms, relax_cell=True, formula_units=n, meta=meta)

    def reference_species(self, name: str) -> str:
        from pqdflow.structures.ligands import build_reference_species

        atoms = build_reference_species(name)
        bulk = atoms.info.get("kind") == "bulk"
        meta = {"species": name}
        kind: CalcKind = "bulk" if bulk else "molecule"
        return self.add(
            f"ref-{name}", kind, atoms, relax_cell=bulk, role="reference", meta=meta
        ).name

    def ligand_reference(self, name: str) -> str:
        from pqdflow.structures.ligands import build_ligand_reference

        atoms = build_ligand_reference(name, chain_length=self.chain)
        meta = {"ligand": name, "chain_length": self.chain}
        return self.add(
            f"ligand-{name}", "molecule", atoms, role="ligand_reference", meta=meta
        ).name

    def binding(
        self,
        label: str,
        adsorbed: CalcSpec,
        slab: CalcSpec,
        *,
        suffix: str = "",
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        records = adsorbed.atoms.info.get("ligands", [])
        counts = Counter(str(r["name"]) for r in records)
        ligands = {self.ligand_reference(name): float(k) for name, k in counts.items()}
        consumed = _composition(slab.atoms)
        for calc, k in ligands.items():
            for el, v in _composition(self.calcs[calc].atoms).items():
                consumed[el] += int(k) * v
        try:
            released = balance_released(consumed, _composition(adsorbed.atoms), self.candidates)
        except StudyError as exc:
            hint = "" if self.allow_redox else " (redox products Br2/I2 need ligands.allow_redox)"
            raise StudyError(f"{adsorbed.name}: {exc}{hint}") from exc
        spec = BindingSpec(
            name=f"binding-{label}-{slab.name.removeprefix('slab-')}{suffix}",
            ligand=label,
            site="+".join(str(r["site"]) for r in records),
            adsorbed=adsorbed.name,
            slab=slab.name,
            ligands=ligands,
            released={self.reference_species(s): c for s, c in released.items()},
            meta={**slab.meta, "channel": "binding", **(meta or {})},
        )
        self.add_reaction(spec)

    def add_reaction(self, spec: BindingSpec) -> None:
        """Check ``spec`` atom by atom and in formal charge, then add it to the plan."""
        from pqdflow.structures.reactions import Reaction, Species

        parts = {
            name: Species.of(name, self.calcs[name].atoms, self.calcs[name].formula_units)
            for name in spec.parents()
        }
        reaction = Reaction(
            spec.name,
            {spec.slab: 1.0, **spec.ligands},
            {spec.adsorbed: 1.0, **spec.released},
            parts,
            label=str(spec.meta.get("channel", "binding")),
        ).check()
        spec.meta["equation"] = reaction.equation()
        self.bindings.append(spec)

    def surfaces(self, x: float, termination: str) -> None:
        """Clean slab plus every closed-shell passivated preset on one termination."""
        from pqdflow.structures.adsorption import (
            SURFACE_PRESETS,
            build_passivated_surface,
        )

        tag = f"{termination}-{_x_tag(x)}"
        clean = self.slab(x, termination)
        meta = {"x": x, "termination": termination}
        slab = self.add(f"slab-{tag}", "slab", clean, meta=meta)
        for preset in self.study.ligands.surfaces:
            atoms = build_passivated_surface(clean, preset, chain_length=self.chain)
            reason = _unbalanced(atoms)
            if reason:
                self.skipped.append(f"{preset} on {tag}: {reason}")
                continue
            extra = {**meta, "surface": preset, "ligands": list(SURFACE_PRESETS[preset])}
            self.binding(preset, self.add(f"{preset}-{tag}", "adsorbed", atoms, meta=extra), slab)

    def single(self, x: float, name: str) -> None:
        """One ligand alone on every study termination where its cell is charge-balanced.

        Each placement candidate (``ligands.configurations``: sites and orientations) is
        its own calculation and reaction; ``ligands.coverage`` copies go on free sites.
        """
        from pqdflow.structures.adsorption import place_ligand, placement_candidates

        opts = self.study.ligands
        tried = []
        for termination in self.study.terminations:
            tag = f"{termination}-{_x_tag(x)}"
            clean = self.slab(x, termination)
            atoms = place_ligand(clean, name, chain_length=self.chain)
            reason = _unbalanced(atoms)
            if reason:
                tried.append(f"{termination}: {reason}")
                continue
            meta = {"x": x, "termination": termination}
            slab = self.add(f"slab-{tag}", "slab", clean, meta=meta)
            configs = (
                [(None, None)]
                if opts.configurations == 1
                else placement_candidates(clean, name, opts.configurations, chain_length=self.chain)
            )
            label = name if opts.coverage == 1 else f"{name}x{opts.coverage}"
            for k, (index, rotation) in enumerate(configs):
                if k or opts.coverage > 1:
                    atoms = place_ligand(
                        clean, name, index=index or 0, rotation=rotation, chain_length=self.chain
                    )
                    for _ in range(opts.coverage - 1):
                        atoms = place_ligand(atoms, name, chain_length=self.chain)
                record = atoms.info["ligands"][0]
                extra = {
                    **meta,
                    "ligand": name,
                    "site": str(record["site"]),
                    "site_index": int(record["site_index"]),
                    "rotation": float(record["rotation"]),
                    "configuration": k,
                    "coverage": opts.coverage,
                }
                suffix = f"-c{k}" if k else ""
                ads = self.add(f"ads-{label}-{tag}{suffix}", "adsorbed", atoms, meta=extra)
                self.binding(name, ads, slab, suffix=suffix, meta=extra)
        if not any(b.meta.get("ligand") == name for b in self.bindings):
            raise StudyError(
                f"ligands.names: {name!r} gives no closed-shell, charge-balanced adsorbed cell on "
                f"any termination of the study ({'; '.join(tried)}); add another termination "
                "(allowed: CsX, PbX2)"
            )

    def plan(self) -> StudyPlan:
        study = self.study
        fills = bool(study.neb.fill.fillers and study.neb.fill.hosts)
        neb_x = [study.neb.x] if study.neb.paths or fills else []
        for x in dict.fromkeys([*study.compositions, *neb_x]):
            self.bulk(x)
        for x in study.compositions:
            for termination in study.terminations:
                self.surfaces(x, termination)
        for name in study.ligands.names:
            self.single(study.compositions[0], name)
        if study.ligands.silyl_channels:
            from pqdflow.workflows.study.channels import plan_silyl_channels

            plan_silyl_channels(self, study.compositions[0])
        nebs = [spec for path in study.neb.paths for spec in self.neb(path)]
        from pqdflow.workflows.study.fills import plan_vacancy_fills

        plan_vacancy_fills(self)
        self.slab_starts()
        self.set_dispersion(nebs)
        return StudyPlan(
            name=study.name,
            calculations=list(self.calcs.values()),
            bindings=self.bindings,
            nebs=nebs,
            incar_overrides={k: v for k, v in study.inputs.incar.model_dump().items() if v},
            meta={
                "skipped": list(self.skipped),
                "hop_networks": self.hop_networks,
                "inputs": study.inputs.model_dump(exclude={"incar"}),
                "study": study.model_dump(mode="json"),
            },
        )

    def slab_starts(self) -> None:
        """Start each adsorbed binding structure from its relaxed clean slab.

        Every adsorbed cell of a binding reaction is its clean slab (same termination and
        composition) less the exchanged surface atoms, with the ligands appended
        (:func:`start_from_host` finds the removed atoms); its relaxation then starts from
        the relaxed slab with the ligands placed on it
        (:func:`~pqdflow.workflows.study.steps.start_on_host`), as adsorption workflows do.
        """
        for spec in self.bindings:
            if spec.meta.get("channel") != "binding" or spec.slab not in self.calcs:
                continue
            ads, slab = self.calcs[spec.adsorbed], self.calcs[spec.slab]
            if "start_from_host" in ads.meta or ads.kind != "adsorbed":
                continue
            ads.meta = {**ads.meta, **start_from_host(slab.name, slab.atoms, ads.atoms)}

    def set_dispersion(self, nebs: list[NebSpec]) -> None:
        """Record ``meta["dispersion"]`` (``"d3bj"`` / ``"none"``) on every calculation.

        ``auto``: D3(BJ) on every calculation of a reaction with organic ligands, so each
        reaction energy uses one Hamiltonian; NEB endpoints and bands (and anything outside
        such a reaction) without. ``d3bj`` / ``none``: every calculation and band alike.
        """
        from pqdflow.structures.ligands import MOLECULAR_ELEMENTS

        mode = self.study.inputs.dispersion
        organic: set[str] = set()
        if mode == "auto":
            for spec in self.bindings:
                cells = [self.calcs[p].atoms for p in spec.parents()]
                if any(set(a.get_chemical_symbols()) & MOLECULAR_ELEMENTS for a in cells):
                    organic.update(spec.parents())
            self.formation_twins(organic)
        for calc in self.calcs.values():
            on = mode == "d3bj" or calc.name in organic
            calc.meta = {**calc.meta, "dispersion": "d3bj" if on else "none"}
        for spec in self.bindings:
            spec.meta["dispersion"] = self.calcs[spec.adsorbed].meta["dispersion"]
        self.set_solvent()
        for neb in nebs:
            neb.meta = {**neb.meta, "dispersion": "d3bj" if mode == "d3bj" else "none"}

    def set_solvent(self) -> None:
        """Record ``meta["solvent"]`` on every calculation and reaction of a binding reaction.

        Only with ``ligands.references: solvent``: a reaction's energy then uses one
        Hamiltonian (every term in the same implicit solvent); NEB cells stay in vacuum.
        """
        opts = self.study.ligands
        if opts.references != "solvent":
            return
        solvent = {"model": "implicit", "epsilon": float(opts.solvent_epsilon)}
        for spec in self.bindings:
            spec.meta["solvent"] = dict(solvent)
            for name in spec.parents():
                calc = self.calcs[name]
                calc.meta = {**calc.meta, "solvent": dict(solvent)}

    def formation_twins(self, organic: set[str]) -> None:
        """Plan a dispersion-free twin of each formation reference that a reaction needs with D3.

        A vacancy formation energy combines the bands' cells (no D3 under ``auto``) with the
        halide chemical-potential references; a reference that an organic reaction also uses
        (``ref-CsBr`` released by OAm on CsX) gets a twin ``<name>-nod3`` (``meta["twin_of"]``)
        so that neither energy mixes two Hamiltonians.
        """
        from pqdflow.analysis.formation import FORMATION_REFERENCES

        if not any("host_calc" in net for net in self.hop_networks.values()):
            return
        needed = {n for refs in FORMATION_REFERENCES.values() for n in refs} & set(self.calcs)
        for name in sorted(needed & organic):
            calc = self.calcs[name]
            self.add(
                f"{name}-nod3",
                calc.kind,
                calc.atoms.copy(),
                relax_cell=calc.relax_cell,
                formula_units=calc.formula_units,
                role=calc.role,
                meta={**calc.meta, "twin_of": name},
            )

    def neb_host(self, path: NebPath) -> Atoms:
        from pqdflow.structures.bulk import build_mixed_halide
        from pqdflow.structures.coverage import build_covered_surface

        x = self.study.neb.x
        if path.host == "bulk":
            return build_mixed_halide(x, self.study.neb.bulk_supercell, seed=self.study.seed)
        slab = self.slab(x, self.study.neb.termination)
        if path.host == "clean":
            return slab
        return build_covered_surface(
            slab, path.host, self.study.neb.coverage, chain_length=self.chain
        )

    def vacancy_references(self, host: Atoms, tag: str, kind: CalcKind) -> str:
        """Plan the pristine NEB host and the references of the halide chemical potential."""
        from ase.build import bulk as ase_bulk

        from pqdflow.structures.defects import rattle_host

        study = self.study
        rattle = study.neb.rattle
        start = rattle_host(host, study.seed, rattle) if rattle > 0 else host
        meta = {"x": study.neb.x, "surface": tag}
        name = self.add(f"host-{tag}", kind, start, role="vacancy_host", meta=meta).name
        halides = set(host.get_chemical_symbols()) & {"Br", "I"}
        for halide, x in (("Br", 3.0), ("I", 0.0)):
            if halide in halides:
                self.bulk(x)
                self.reference_species(f"{halide}2")
                self.reference_species(f"Cs{halide}")
        pb = ase_bulk("Pb", "fcc", a=4.95)
        pb.info.update(kind="bulk", formula_units=1)
        self.add("ref-Pb", "bulk", pb, relax_cell=True, role="reference", meta={"species": "Pb"})
        return name

    def host_start(self, tag: str, vacancy_index: int, atoms: Atoms) -> dict[str, Any]:
        """``meta["start_from_host"]`` of a structure built from a NEB host less one atom.

        The pristine host is relaxed anyway (formation energies); an NEB initial endpoint
        (the host less the vacancy's atom) or a vacancy fill (that, plus the filler's atoms
        appended) then starts from the *relaxed* host instead of the unrelaxed one
        (:func:`~pqdflow.workflows.study.steps.start_on_host`): fewer steps, and the host's
        relaxed ligand conformation, which the formation and filling energies compare with.
        Empty where the planned structure is not built that way (:func:`start_from_host`).
        """
        host_name = self.hop_networks.get(tag, {}).get("host_calc")
        if host_name is None:
            return {}
        return start_from_host(host_name, self.calcs[host_name].atoms, atoms, [vacancy_index])

    def neb(self, path: NebPath) -> list[NebSpec]:
        """NEB specs of the hops a path selects, plus the host's hop network in the meta."""
        from pqdflow.structures.defects import build_neb_endpoints, default_n_images
        from pqdflow.structures.hops import hop_network, sample_hops, select_hops

        study = self.study
        host = self.neb_host(path)
        offered = sample_hops(host, max_depth=study.neb.max_depth)
        try:
            chosen = select_hops(offered, path.hops, where=f"neb.paths[{path.host}].hops")
        except InputError as exc:
            raise StudyError(str(exc)) from None
        tag = f"{path.host}-{_x_tag(study.neb.x)}"
        self.hop_networks[tag] = {
            "host": path.host,
            "x": study.neb.x,
            "hops": [h.labels() for h in offered],
            "selected": [h.name for h in chosen],
            **hop_network(host, offered),
        }
        kinds: dict[str, CalcKind] = {"bulk": "bulk", "clean": "slab"}
        kind = kinds.get(path.host, "adsorbed")
        rattle = study.neb.rattle
        if study.neb.formation:
            self.hop_networks[tag]["host_calc"] = self.vacancy_references(host, tag, kind)
        specs = []
        initials: dict[int, str] = {}  # vacancy site -> its initial endpoint (one per site)
        for hop in chosen:
            initial, final = build_neb_endpoints(
                host,
                vacancy_index=hop.vacancy_index,
                hop_index=hop.hop_index,
                rattle=study.seed if rattle > 0 else None,
                rattle_stdev=rattle if rattle > 0 else 0.03,
            )
            meta: dict[str, Any] = {
                "x": study.neb.x,
                "host": path.host,
                "surface": tag,
                "hop": hop.labels(),
                "vacancy_index": hop.vacancy_index,
                "hop_index": hop.hop_index,
                "charge": study.neb.vacancy_charge,
            }
            name = f"neb-{tag}-{hop.name}"
            # hops out of one vacancy share its initial endpoint: the same rattled host less
            # the same atom, relaxed once (its energy is also the vacancy's formation energy)
            shared = self.calcs.get(initials.get(hop.vacancy_index, ""))
            if shared is not None and shared.atoms == initial:  # ASE: same atoms, positions, cell
                first = shared
            else:
                first = self.add(
                    f"{name}-initial",
                    kind,
                    initial,
                    role="neb_initial",
                    meta={**meta, **self.host_start(tag, hop.vacancy_index, initial)},
                )
                initials[hop.vacancy_index] = first.name
            last = self.add(f"{name}-final", kind, final, role="neb_final", meta=meta)
            specs.append(
                NebSpec(
                    name=name,
                    label=f"{path.host}:{hop.name}",
                    initial=first.name,
                    final=last.name,
                    n_images=path.n_images or int(default_n_images(initial, final)),
                    hopping_index=int(initial.info["neb"]["hopping_index"]),
                    meta=meta,
                )
            )
        return specs
