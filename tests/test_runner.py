"""run_study on a small hand-made plan (mock): outputs, tables, restart without recompute."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.constraints import FixAtoms

from pqdflow.analysis.binding import compute_binding
from pqdflow.analysis.report import format_table
from pqdflow.documents.plan import BindingSpec, CalcSpec, NebSpec, StudyPlan
from pqdflow.documents.results import NebDoc, RelaxDoc, StudyResults
from pqdflow.errors import (
    EndpointError,
    EndpointWarning,
    InputError,
    OverwriteError,
    RunInterrupted,
    StudyError,
)
from pqdflow.workflows.backends import get_backend
from pqdflow.workflows.engine.ase_backend import AseBackend
from pqdflow.workflows.engine.runner import run_study
from pqdflow.workflows.study import steps
from pqdflow.workflows.study.steps import final_endpoint_start, relax_calculation, run_neb

A = 5.945


def unit() -> Atoms:
    h = A / 2
    return Atoms(
        "CsPbBr3",
        positions=[(h, h, h), (0, 0, 0), (h, 0, 0), (0, h, 0), (0, 0, h)],
        cell=np.eye(3) * A,
        pbc=True,
    )


def small_plan() -> StudyPlan:
    slab = unit().repeat((2, 2, 1))
    slab.center(vacuum=7.0, axis=2)
    slab.set_constraint(FixAtoms(indices=[i for i, a in enumerate(slab) if a.symbol == "Pb"]))
    top_cs = next(i for i, a in enumerate(slab) if a.symbol == "Cs")
    # methylammonium in place of a surface Cs: slab + CH3NH3Br -> adsorbed + CsBr
    ma = molecule("H3CNH2") + Atoms("H", positions=[(1.0, -1.06, 0.0)])
    ma.translate(slab.positions[top_cs] - ma.positions[1] + np.array([0.0, 0.0, 0.3]))
    adsorbed = slab.copy()
    del adsorbed[top_cs]
    adsorbed += ma
    pair = molecule("H3CNH2") + Atoms("HBr", positions=[(1.0, -1.06, 0.0), (3.1, -1.8, 0.0)])
    pair.center(vacuum=5.0)
    csbr = Atoms("CsBr", positions=[(0, 0, 0), (2.1, 2.1, 2.1)], cell=np.eye(3) * 4.2, pbc=True)
    host = unit().repeat((2, 2, 2))
    host.rattle(0.03, seed=1)
    initial = host.copy()
    del initial[2]  # the first Br
    final = initial.copy()
    hop = 2  # host index 3 (Br at (0, h, 0)) moves onto the vacancy at (h, 0, 0)
    final.positions[hop] += host.get_distance(3, 2, mic=True, vector=True)
    return StudyPlan(
        name="small",
        calculations=[
            CalcSpec("slab", "slab", slab),
            CalcSpec("ads-MA", "adsorbed", adsorbed),
            CalcSpec("ligand-MABr", "molecule", pair, role="ligand_reference"),
            CalcSpec("ref-CsBr", "bulk", csbr, relax_cell=True, role="reference"),
            CalcSpec("neb-i", "bulk", initial, role="neb_initial", formula_units=8),
            CalcSpec("neb-f", "bulk", final, role="neb_final", formula_units=8),
        ],
        bindings=[
            BindingSpec(
                "binding-MA",
                "MA",
                "A_pocket",
                "ads-MA",
                "slab",
                {"ligand-MABr": 1.0},
                {"ref-CsBr": 1.0},
            )
        ],
        nebs=[NebSpec("neb-bulk", "bulk", "neb-i", "neb-f", n_images=3, hopping_index=hop)],
    )


class CountingBackend(AseBackend):
    """The mock backend, counting calls and optionally failing after some relaxations."""

    def __init__(self, fail_after: int | None = None) -> None:
        mock = get_backend("mock", max_steps=300)
        super().__init__("mock", mock.calculator_factory, mock.settings)
        self.relaxed: list[str] = []
        self.nebs: list[str] = []
        self.fail_after = fail_after

    def relax(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        if self.fail_after is not None and len(self.relaxed) >= self.fail_after:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a step
            time.sleep(5)  # never reached: the handler stops the step
        self.relaxed.append(spec.name)
        return super().relax(spec, directory)

    def neb(self, spec: NebSpec, *args: Any, **kwargs: Any) -> Any:
        self.nebs.append(spec.name)
        return super().neb(spec, *args, **kwargs)


@pytest.fixture(scope="module")
def finished(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, StudyResults, CountingBackend]:
    out = tmp_path_factory.mktemp("study")
    interrupted = CountingBackend(fail_after=3)
    # Python's own SIGINT handler, even when pytest runs as a background job (SIG_IGN)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(RunInterrupted, match="run the same command again") as info:
            run_study(small_plan(), interrupted, out, progress=False, echo=False)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
    assert info.value.signum == signal.SIGINT
    assert interrupted.relaxed == ["slab", "ads-MA", "ligand-MABr"]
    partial = StudyResults.read(out / "results.json")
    assert partial.partial
    assert partial.interrupted
    assert sorted(c["name"] for c in partial.calculations) == ["ads-MA", "ligand-MABr", "slab"]
    assert {"ref-CsBr", "binding-MA", "neb-bulk"} <= set(partial.missing)
    assert [s["outcome"] for s in partial.sessions] == ["interrupted"]
    resumed = CountingBackend()
    results = run_study(small_plan(), resumed, out, progress=False, echo=False)
    return out, results, resumed


def test_restart_does_not_recompute_finished_calculations(
    finished: tuple[Path, StudyResults, CountingBackend],
) -> None:
    out, results, resumed = finished
    assert resumed.relaxed == ["ref-CsBr", "neb-i", "neb-f"]  # the first three were done
    assert resumed.nebs == ["neb-bulk"]
    again = CountingBackend()
    rerun = run_study(small_plan(), again, out, progress=False, echo=False, plots=False)
    assert again.relaxed == []
    assert again.nebs == []
    assert [b["E_b_eV"] for b in rerun.binding] == [b["E_b_eV"] for b in results.binding]
    assert rerun.neb == results.neb  # read back from the finished NEB document


def test_wall_time_covers_every_session(
    finished: tuple[Path, StudyResults, CountingBackend],
) -> None:
    _, results, _ = finished
    assert [s["outcome"] for s in results.sessions] == ["interrupted", "completed"]
    times = [s["wall_time_s"] for s in results.sessions]
    assert all(t > 0 for t in times)
    assert results.wall_time_s == pytest.approx(sum(times), abs=0.01)
    assert not results.partial
    assert not results.interrupted
    assert results.missing == []


def test_results_files(finished: tuple[Path, StudyResults, CountingBackend]) -> None:
    out, results, _ = finished
    data = json.loads((out / "results.json").read_text())
    assert data["backend"] == "mock"
    (binding,) = data["binding"]
    assert binding["ligand"] == "MA"
    assert np.isfinite(binding["E_b_eV"])
    assert binding["definition"] == "exchange"
    assert binding["balanced"] is True
    assert "E_b = E(adsorbed)" in binding["definition_text"]
    (neb,) = data["neb"]
    assert neb["path"] == "neb-bulk"
    assert neb["Ea_eV"] > 0
    assert neb["Ea_eV"] - neb["Ea_reverse_eV"] == pytest.approx(
        neb["image_energies"][-1] - neb["image_energies"][0]
    )
    stored = StudyResults.read(out / "results.json")
    assert stored.study == "small"
    assert stored.neb == results.neb
    assert stored.binding[0]["E_b_eV"] == results.binding[0]["E_b_eV"]
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [r["type"] for r in rows] == ["binding", "neb"]
    assert float(rows[0]["E_b_eV"]) == pytest.approx(binding["E_b_eV"], abs=1e-6)
    assert (out / "binding_energies.png").stat().st_size > 1000
    assert (out / "neb_profiles.png").stat().st_size > 1000
    # NEB endpoints relaxed with the tight criterion, others with fmax 0.02
    docs = {d["name"]: d for d in data["calculations"]}
    assert docs["neb-i"]["settings"]["fmax"] == 0.005
    assert docs["slab"]["settings"]["fmax"] == 0.02


def test_binding_energy_matches_the_documents(
    finished: tuple[Path, StudyResults, CountingBackend],
) -> None:
    _, results, _ = finished
    docs = {d["name"]: RelaxDoc.from_dict(d) for d in results.calculations}
    expected = (
        docs["ads-MA"].energy
        + docs["ref-CsBr"].energy / docs["ref-CsBr"].formula_units
        - docs["slab"].energy
        - docs["ligand-MABr"].energy
    )
    assert results.binding[0]["E_b_eV"] == pytest.approx(expected)
    interaction = compute_binding(small_plan().bindings[0], docs, definition="interaction")
    assert interaction.E_b_eV == pytest.approx(expected - docs["ref-CsBr"].energy)
    assert interaction.balanced is False


def test_table_lists_binding_and_neb(finished: tuple[Path, StudyResults, CountingBackend]) -> None:
    _, results, _ = finished
    table = format_table(results)
    assert "MA" in table
    assert "neb-bulk" in table
    assert "not physics" in table


def test_unbalanced_reaction_is_an_error(
    finished: tuple[Path, StudyResults, CountingBackend],
) -> None:
    _, results, _ = finished
    docs = {d["name"]: RelaxDoc.from_dict(d) for d in results.calculations}
    spec = BindingSpec("bad", "MA", "A_pocket", "ads-MA", "slab", {"ligand-MABr": 1.0})
    with pytest.raises(InputError, match="Cs"):
        compute_binding(spec, docs)


def test_result_of_another_backend_is_not_reused(
    finished: tuple[Path, StudyResults, CountingBackend],
) -> None:
    out, _, _ = finished
    spec = small_plan().calculations[0]
    other = AseBackend("other", get_backend("mock").calculator_factory)
    with pytest.raises(OverwriteError, match="'mock'"):
        relax_calculation(spec, other, out / "calcs" / spec.name)


def test_empty_study_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="no calculations"):
        StudyPlan(name="empty", calculations=[])
    plan = small_plan()
    plan.calculations, plan.nebs, plan.bindings = [], [], []
    with pytest.raises(StudyError, match="no calculations"):
        run_study(plan, get_backend("mock"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def relaxed_endpoints(
    tmp_path: Path,
) -> tuple[StudyPlan, NebSpec, CountingBackend, dict[str, RelaxDoc]]:
    """The small plan's NEB endpoints, relaxed on the counting mock backend."""
    plan = small_plan()
    spec = plan.nebs[0]
    backend = CountingBackend()
    docs = {
        name: relax_calculation(plan.get(name), backend, tmp_path / name)
        for name in (spec.initial, spec.final)
    }
    return plan, spec, backend, docs


def far_final_endpoint(
    tmp_path: Path,
) -> tuple[StudyPlan, NebSpec, CountingBackend, dict[str, RelaxDoc]]:
    """Relaxed endpoints of the small plan whose final "relaxed" into another basin.

    Every framework atom of the final endpoint is moved 1.8 Å away.
    """
    from ase.io import write

    plan, spec, backend, docs = relaxed_endpoints(tmp_path)
    far = docs[spec.final].read_structure()
    far.positions += [1.8, 0.0, 0.0]
    write(docs[spec.final].structure_file(), far, format="extxyz")
    return plan, spec, backend, docs


def test_endpoints_in_different_basins_are_rebased(tmp_path: Path) -> None:
    plan, spec, backend, docs = far_final_endpoint(tmp_path)
    neb = run_neb(spec, docs[spec.initial], docs[spec.final], backend, tmp_path / "neb")
    assert f"{spec.final}-rebased" in backend.relaxed
    assert neb.final == f"{spec.final}-rebased"
    assert "move by more than" in neb.meta["final_rebased"]["reason"]
    # rebuilt in the initial's frame: a normal V_Br hop, same as the original endpoints give
    reference = run_neb(
        spec,
        docs[spec.initial],
        relax_calculation(plan.get(spec.final), backend, tmp_path / "fresh-final"),
        backend,
        tmp_path / "neb-reference",
    )
    assert neb.barrier["forward"] == pytest.approx(reference.barrier["forward"], abs=0.02)


def test_endpoints_that_stay_apart_after_rebasing_are_run_and_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pqdflow.errors import EndpointWarning

    _, spec, backend, docs = far_final_endpoint(tmp_path)
    # a potential on which the rebuilt final endpoint relaxes away again
    monkeypatch.setattr(steps, "final_in_initial_basin", lambda initial, final, k: final)
    with pytest.warns(EndpointWarning, match="move by more than"):
        neb = run_neb(spec, docs[spec.initial], docs[spec.final], backend, tmp_path / "n")
    assert neb.meta["endpoint_check"]["passed"] is False
    assert "move by more than" in neb.meta["endpoint_check"]["reason"]
    assert neb.final == f"{spec.final}-rebased"
    assert NebDoc.read(tmp_path / "n" / "result.json").meta["endpoint_check"]["passed"] is False


def test_a_final_endpoint_that_relaxed_on_by_a_second_hop_is_run_and_flagged(
    tmp_path: Path,
) -> None:
    """Another Br took the hopping atom's site: no rebuilds (both would start from that
    state), the band runs between the two minima, flagged as a cascade."""
    from ase.io import write

    from pqdflow.analysis.migration import summarize_migration
    from pqdflow.errors import EndpointWarning

    _, spec, backend, docs = relaxed_endpoints(tmp_path)
    initial = docs[spec.initial].read_structure()
    final = docs[spec.final].read_structure()
    k = spec.hopping_index
    gaps = np.linalg.norm(initial.positions - initial.positions[k], axis=1)
    j = next(int(i) for i in np.argsort(gaps) if i != k and initial[i].symbol == initial[k].symbol)
    final.positions[j] = initial.positions[k] + [0.25, 0.0, 0.0]
    write(docs[spec.final].structure_file(), final, format="extxyz")
    relaxed_before = list(backend.relaxed)
    with pytest.warns(EndpointWarning, match=r"vacancy moved on by a second hop"):
        neb = run_neb(spec, docs[spec.initial], docs[spec.final], backend, tmp_path / "band")
    check = neb.meta["endpoint_check"]
    assert check["passed"] is False
    assert check["cascade"] == {"index": j, "element": initial[k].symbol, "distance_A": 0.25}
    assert backend.relaxed == relaxed_before  # neither endpoint rebuilt nor relaxed again
    assert not (tmp_path / "band" / "final-rebased").exists()
    assert "final_rebased" not in neb.meta
    assert "ligands_rebased" not in neb.meta
    assert backend.nebs == [spec.name]  # the band was run between the two minima
    assert neb.final == spec.final
    meta = {**neb.meta, "surface": "s", "hop": {"name": "h", "vacancy_element": "Br"}}
    summary = summarize_migration([{**neb.as_dict(), "meta": meta}], {"s": {}})
    assert summary["s"]["hops"][0]["cascade_by"] == f"{initial[k].symbol} atom {j}"
    table = format_table(StudyResults(study="s", backend="mock", neb=[neb.as_dict()]))
    assert f"(two hops: {initial[k].symbol} atom {j} took the site)" in table


def test_a_rebuilt_final_endpoint_that_relaxes_on_is_flagged_as_a_cascade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tilt basins first, then the rebuilt final endpoint relaxes on by a second hop."""
    from pqdflow.errors import EndpointWarning

    plan, spec, backend, docs = far_final_endpoint(tmp_path)
    initial = docs[spec.initial].read_structure()
    k = spec.hopping_index
    site = plan.get(spec.final).atoms.positions[k]  # the vacancy the hopping atom fills
    gaps = np.linalg.norm(initial.positions - initial.positions[k], axis=1)
    j = next(int(i) for i in np.argsort(gaps) if i != k and initial[i].symbol == initial[k].symbol)

    def relaxes_on(ini: Atoms, fin: Atoms, hop: int) -> Atoms:
        start = ini.copy()
        start.positions[hop] = site  # the planned final state ...
        start.positions[j] = ini.positions[hop]  # ... where a second Br took the site
        return start

    monkeypatch.setattr(steps, "final_in_initial_basin", relaxes_on)
    with pytest.warns(EndpointWarning, match="move by more than"):
        neb = run_neb(spec, docs[spec.initial], docs[spec.final], backend, tmp_path / "n")
    assert neb.final == f"{spec.final}-rebased"
    assert neb.meta["endpoint_check"]["cascade"]["index"] == j
    assert "ligands_rebased" not in neb.meta


def test_final_endpoint_starts_from_the_relaxed_initial() -> None:
    plan = small_plan()
    ini, fin = plan.get("neb-i").atoms, plan.get("neb-f").atoms
    relaxed = ini.copy()
    relaxed.positions += np.array([0.1, 0.0, 0.0])  # a uniform "relaxation"
    relaxed.positions[5] += np.array([0.0, 0.3, 0.0])  # and a local one far from nothing
    hop = plan.nebs[0].hopping_index
    start = final_endpoint_start(relaxed, ini, fin, hop)
    others = [i for i in range(len(ini)) if i != hop]
    np.testing.assert_allclose(start.positions[others], relaxed.positions[others])
    expected = fin.positions[hop] + np.array([0.1, 0.0, 0.0])
    shift = start.positions[hop] - expected
    assert np.linalg.norm(shift) < 0.3 / 3  # at most the local move averaged over neighbours
    with pytest.raises(EndpointError):
        final_endpoint_start(relaxed, ini, fin[:-1], hop)


@pytest.mark.mlip
@pytest.mark.slow
def test_chgnet_four_ligands_bind_with_converged_relaxations(tmp_path: Path) -> None:
    pytest.importorskip("chgnet")
    from pqdflow.workflows.study import plan_study, study_from_dict

    study = study_from_dict(
        {
            "name": "ligands",
            "compositions": [3.0],
            "ligands": {"names": ["OAm", "OAc", "AnHI", "TMSBr"], "surfaces": []},
            "neb": {"paths": []},
        }
    )
    results = run_study(plan_study(study), get_backend("chgnet"), tmp_path, progress=False)
    by_ligand = {b["ligand"]: b for b in results.binding}
    assert sorted(by_ligand) == ["AnHI", "OAc", "OAm", "TMSBr"]
    for entry in by_ligand.values():
        assert np.isfinite(entry["E_b_eV"])
        assert abs(entry["E_b_eV"]) < 10.0
        assert entry["all_converged"]


def test_a_final_state_that_relaxes_back_into_the_initial_is_flagged_as_one_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pqdflow.errors import EndpointWarning

    _, spec, backend, docs = far_final_endpoint(tmp_path)
    # the rebuilt final endpoint is the initial state itself (the hopping atom went back)
    monkeypatch.setattr(steps, "final_in_initial_basin", lambda initial, final, k: initial.copy())
    with pytest.warns(EndpointWarning, match="same state"):
        neb = run_neb(spec, docs[spec.initial], docs[spec.final], backend, tmp_path / "n")
    check = neb.meta["endpoint_check"]
    assert check["passed"] is False
    assert check["same_state"] is True
    from pqdflow.analysis.migration import hop_blocked

    assert hop_blocked(neb.as_dict())
    # no band between one state: no force call, not converged, and it says why
    assert neb.n_force_calls == 0
    assert not neb.converged
    assert "one state" in neb.stop_reason
    assert NebDoc.read(tmp_path / "n" / "result.json").meta["endpoint_check"]["same_state"]
    from pqdflow.analysis.barriers import summarize_neb

    summary = summarize_neb(neb)
    assert summary["converged"] is False
    assert "one state" in summary["notes"][0]
    # the report writer draws it (two points, the endpoints)
    from pqdflow.analysis.barriers import BarrierDoc

    assert BarrierDoc.from_dict(neb.barrier).energies == pytest.approx([0.0, 0.0], abs=1e-6)
    from pqdflow.analysis.report.writers import _plots

    results = StudyResults(study="s", backend="mock", neb=[neb.as_dict()])
    assert "neb_profiles.png" in _plots(results, tmp_path / "plots")


def test_a_vacancy_the_relaxed_initial_endpoint_filled_gives_a_blocked_hop(tmp_path: Path) -> None:
    """Another atom moved into the vacancy: no final relaxation, no band, the hop blocked."""
    from ase.io import write

    from pqdflow.analysis.migration import hop_blocked
    from pqdflow.workflows.study.scheduler import schedule

    plan = small_plan()
    spec = plan.nebs[0]
    backend = CountingBackend()
    by_name = {s.name: s for s in schedule(plan)}
    initial = relax_calculation(plan.get(spec.initial), backend, tmp_path / spec.initial)
    # the relaxed initial endpoint has another Br (not the hopping one) on the vacancy site
    atoms = initial.read_structure()
    final_step = by_name[spec.final]
    site = final_endpoint_start(
        atoms, final_step.start_from.initial_start, final_step.spec.atoms, spec.hopping_index
    ).positions[spec.hopping_index]
    other = next(i for i, a in enumerate(atoms) if a.symbol == "Br" and i != spec.hopping_index)
    atoms.positions[other] = site + np.array([0.2, 0.0, 0.0])
    write(initial.structure_file(), atoms, format="extxyz")
    docs = {spec.initial: initial}
    # the planned structure records which ligand the occupant belongs to (extxyz drops it)
    final_step.spec.atoms.info["ligands"] = [{"name": "AnHI", "indices": [other]}]
    final = steps.execute_step(final_step, backend, docs, tmp_path)
    assert isinstance(final, RelaxDoc)
    filled = final.meta["vacancy_filled"]
    assert filled["index"] == other
    assert filled["element"] == "Br"
    assert filled["ligand"] == "AnHI"
    # 0.2 Å off the site (the site itself follows the moved neighbourhood a little)
    assert filled["distance_A"] == pytest.approx(0.2, abs=0.1)
    assert final.n_force_calls == 0
    assert spec.final not in backend.relaxed  # nothing was relaxed for it
    assert final.energy == initial.energy
    with pytest.warns(EndpointWarning, match=r"filled in the relaxed initial.*\(blocked\)"):
        neb = run_neb(spec, initial, final, backend, tmp_path / "band")
    assert neb.n_force_calls == 0
    assert backend.nebs == []  # no band was run
    assert neb.meta["endpoint_check"]["same_state"]
    assert "filled" in neb.meta["endpoint_check"]["reason"]
    assert hop_blocked(neb.as_dict())
    # a rerun reads the finished final endpoint
    again = steps.execute_step(final_step, backend, docs, tmp_path)
    assert again.meta["vacancy_filled"] == filled


def test_endpoints_whose_ligands_rearranged_get_the_higher_one_rebuilt_in_the_lower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ase.io import read

    _, spec, backend, docs = relaxed_endpoints(tmp_path)
    ini, fin = docs[spec.initial], docs[spec.final]
    higher, lower = (ini, fin) if ini.energy > fin.energy else (fin, ini)
    side = "initial" if higher is ini else "final"
    originals = (ini.read_structure().positions, fin.read_structure().positions)
    seen: list[float] = []

    # the small plan has no ligands: stand in for endpoints whose chains moved 3 Å, and
    # whose chains agree (0.4 Å) once one endpoint is rebuilt in the other's conformation
    def displacement(initial: Atoms, final: Atoms) -> float:
        same = np.allclose(initial.positions, originals[0]) and np.allclose(
            final.positions, originals[1]
        )
        value = 3.0 if same else 0.4
        seen.append(value)
        return value

    monkeypatch.setattr(steps, "ligand_displacement", displacement)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EndpointWarning)  # nothing left to flag
        neb = run_neb(spec, ini, fin, backend, tmp_path / "n")
    assert seen == [3.0, 0.4, 0.4]
    record = neb.meta["ligands_rebased"]
    assert record["endpoint"] == side
    assert record["from"] == lower.name
    assert record["used"]
    assert record["ligand_moved_before_A"] == 3.0
    assert record["ligand_moved_after_A"] == 0.4
    assert "ligand_rearranged_A" not in neb.meta
    assert f"{higher.name}-ligands" in backend.relaxed
    # the band runs between the lower endpoint and the rebuilt one
    assert (neb.initial if side == "initial" else neb.final) == f"{higher.name}-ligands"
    assert (neb.final if side == "initial" else neb.initial) == lower.name
    # rebuilt from the lower endpoint's relaxed geometry, only the hopping atom moved
    start = read(tmp_path / "n" / f"{side}-ligands" / "relax.extxyz", index=0)
    others = [i for i in range(len(start)) if i != spec.hopping_index]
    low = lower.read_structure()
    np.testing.assert_allclose(start.positions[others], low.positions[others], atol=1e-6)
    assert (
        np.linalg.norm(start.positions[spec.hopping_index] - low.positions[spec.hopping_index]) > 2
    )
    assert neb.meta["ligands_rebased"]["energy_after"] == pytest.approx(
        neb.image_energies[0 if side == "initial" else -1]
    )
    from pqdflow.analysis.migration import summarize_migration

    hop = {"name": "h", "vacancy_element": "Br"}
    row = summarize_migration(
        [{**neb.as_dict(), "meta": {**neb.meta, "surface": "s", "hop": hop}}], {"s": {}}
    )["s"]["hops"][0]
    assert row["ligands_rebased"] == side
    assert row["ligand_rearranged_A"] is None


def test_a_band_whose_ligands_rearranged_between_the_endpoints_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pqdflow.errors import EndpointWarning

    _, spec, backend, docs = relaxed_endpoints(tmp_path)
    # the small plan has no ligands: stand in for endpoints whose chains moved 3 Å, also
    # after rebuilding one endpoint in the other's ligand conformation
    monkeypatch.setattr(steps, "ligand_displacement", lambda initial, final: 3.0)
    with pytest.warns(EndpointWarning, match="ligand atoms move up to 3.0"):
        neb = run_neb(spec, docs[spec.initial], docs[spec.final], backend, tmp_path / "n")
    assert neb.meta["ligand_rearranged_A"] == 3.0
    assert neb.meta["ligands_rebased"]["used"] is False
    assert (neb.initial, neb.final) == (spec.initial, spec.final)  # the original pair
    from pqdflow.analysis.migration import summarize_migration

    hop = {"name": "h", "vacancy_element": "Br"}
    row = summarize_migration(
        [{**neb.as_dict(), "meta": {**neb.meta, "surface": "s", "hop": hop}}], {"s": {}}
    )["s"]["hops"][0]
    assert row["ligand_rearranged_A"] == 3.0


def test_neb_initial_endpoint_starts_from_its_relaxed_host_less_the_vacancy_atom(
    tmp_path: Path,
) -> None:
    from ase.io import read

    from pqdflow.workflows.study.planner import plan_study
    from pqdflow.workflows.study.scheduler import schedule
    from pqdflow.workflows.study.schema import study_from_dict

    plan = plan_study(
        study_from_dict(
            {
                "name": "host-start",
                "terminations": ["CsX"],
                "ligands": {"names": [], "surfaces": []},
                "neb": {"paths": [{"host": "bulk", "hops": ["VBr-Br-bulk-a"]}]},
            }
        )
    )
    (neb,) = plan.nebs
    meta = plan.get(neb.initial).meta["start_from_host"]
    host_name = plan.meta["hop_networks"]["bulk-x2"]["host_calc"]
    assert meta == {"host": host_name, "removed": [neb.meta["vacancy_index"]]}
    assert "start_from_host" not in plan.get(neb.final).meta  # the final starts from the initial
    by_name = {step.name: step for step in schedule(plan)}
    assert host_name in by_name[neb.initial].parents
    order = list(by_name)
    assert order.index(host_name) < order.index(neb.initial)
    backend = get_backend("mock", max_steps=300)
    docs: dict[str, Any] = {}
    for name in by_name[neb.initial].parents:  # the bulk lattice, then the host
        docs[name] = steps.execute_step(by_name[name], backend, docs, tmp_path)
    docs[neb.initial] = steps.execute_step(by_name[neb.initial], backend, docs, tmp_path)
    host = docs[host_name].read_structure()
    del host[meta["removed"]]
    start = read(tmp_path / "calcs" / neb.initial / "relax.extxyz", index=0)
    # the relaxation started on the relaxed host (not the planned, rattled one)
    np.testing.assert_allclose(start.positions, host.positions, atol=1e-6)
    np.testing.assert_allclose(start.cell[:], host.cell[:], atol=1e-6)
    planned = plan.get(neb.initial).atoms
    assert np.abs(start.positions - planned.positions).max() > 0.01
    # a vacancy fill (filler atoms appended): they move with the host atoms around them
    site = plan.get(host_name).atoms.positions[meta["removed"][0]]
    fill = planned + Atoms("I", positions=[site])
    filled = steps.start_on_host(docs[host_name], fill, meta["removed"], slab=False)
    np.testing.assert_allclose(filled.positions[:-1], host.positions, atol=1e-6)
    from ase.geometry import find_mic

    to_site, _ = find_mic(planned.positions - site, host.cell, True)
    moved, _ = find_mic(host.positions - planned.positions, host.cell, True)
    shift = moved[np.linalg.norm(to_site, axis=1) <= 4.5].mean(axis=0)
    np.testing.assert_allclose(filled.positions[-1], site + shift, atol=1e-6)
    assert np.linalg.norm(shift) > 1e-3
    # a host that is not the planned structure's first atoms is refused, naming the fix
    with pytest.raises(EndpointError, match="plan the study again"):
        steps.start_on_host(docs[host_name], planned[:-1], meta["removed"], slab=False)


def test_adsorbed_cell_starts_from_its_relaxed_slab_with_the_ligand_moved_rigidly(
    tmp_path: Path,
) -> None:
    from pqdflow.workflows.study.planner import removed_prefix, start_from_host

    plan = small_plan()
    slab, ads = plan.get("slab"), plan.get("ads-MA")
    removed = removed_prefix(slab.atoms, ads.atoms)
    assert removed is not None
    (cs,) = removed  # the exchanged surface Cs
    assert slab.atoms[cs].symbol == "Cs"
    assert start_from_host("slab", slab.atoms, ads.atoms) == {
        "start_from_host": {"host": "slab", "removed": [cs]}
    }
    # a structure that is not the slab plus appended atoms has no host start
    assert removed_prefix(slab.atoms, ads.atoms[::-1]) is None
    assert start_from_host("slab", slab.atoms, ads.atoms, [cs + 1]) == {}
    relaxed = relax_calculation(slab, get_backend("mock", max_steps=300), tmp_path / "slab")
    tall = ads.atoms.copy()
    tall.cell[2, 2] += 3.0  # more vacuum above the ligand than the clean slab has
    start = steps.start_on_host(relaxed, tall, [cs], slab=True)
    host = relaxed.read_structure()
    del host[cs]
    m = len(host)
    np.testing.assert_allclose(start.positions[:m], host.positions, atol=1e-9)
    assert start.cell[2, 2] == pytest.approx(tall.cell[2, 2])  # the planned vacuum kept
    np.testing.assert_allclose(start.cell[:2], host.cell[:2])
    # the methylammonium moved as one body, by the mean displacement of the slab around it
    before, after = tall.positions[m:], start.positions[m:]
    shift = after - before
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-9)
    assert np.linalg.norm(shift[0]) > 1e-4
