"""An unconverged relaxation is flagged everywhere it feeds: documents, tables, CSV, report,
plots."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from ase import Atoms
from ase.build import bulk, molecule

from pqdflow.analysis.plots import composition_label, plot_binding_energies, plot_neb_profiles
from pqdflow.analysis.report import build_report, format_table
from pqdflow.analysis.report.writers import results_csv
from pqdflow.documents.plan import BindingSpec, CalcSpec, NebSpec, StudyPlan
from pqdflow.documents.results import NebDoc, RelaxDoc, StudyResults
from pqdflow.workflows.backends import get_backend
from pqdflow.workflows.engine.runner import run_study

SHORT = {"h2", "neb-a"}  # these two stop at a 1-step limit


def cu_plan() -> StudyPlan:
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.center(vacuum=5.0, axis=2)
    h2 = molecule("H2")
    h2.positions[1, 2] += 0.3  # stretched: one step cannot converge it
    h2.center(vacuum=4.0)
    ads = slab.copy()
    ads += Atoms("H2", positions=[[0.0, 0.0, 9.0], [0.0, 0.0, 9.74]])
    vac = slab.copy()
    del vac[3]
    vac.rattle(0.05, seed=3)
    hop = vac.copy()
    hop.positions[2] = slab.positions[3]
    return StudyPlan(
        name="flags",
        calculations=[
            CalcSpec("slab", "slab", slab),
            CalcSpec("ads", "adsorbed", ads),
            CalcSpec("h2", "molecule", h2, role="ligand_reference"),
            CalcSpec("neb-a", "slab", vac, role="neb_initial"),
            CalcSpec("neb-b", "slab", hop, role="neb_final"),
        ],
        bindings=[BindingSpec("binding-H2", "H2", "top", "ads", "slab", {"h2": 1.0})],
        nebs=[NebSpec("neb-Cu", "clean", "neb-a", "neb-b", n_images=3, hopping_index=2)],
    )


class ShortOnSome:
    """The mock backend, with a 1-step limit on the relaxations named in SHORT."""

    name = "mock"

    def __init__(self) -> None:
        self.normal = get_backend("mock", neb_interpolation="linear")
        self.short = get_backend("mock", neb_interpolation="linear", max_steps=1)

    def describe(self) -> dict[str, Any]:
        return self.normal.describe()

    def relax(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        return (self.short if spec.name in SHORT else self.normal).relax(spec, directory)

    def neb(self, *args: Any, **kwargs: Any) -> NebDoc:
        return self.normal.neb(*args, **kwargs)


@pytest.fixture(scope="module")
def flagged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StudyResults]:
    out = tmp_path_factory.mktemp("flags")
    results = run_study(cu_plan(), ShortOnSome(), out, progress=False, echo=False)
    return out, results


def test_documents_name_the_unconverged_relaxations(
    flagged: tuple[Path, StudyResults],
) -> None:
    out, results = flagged
    converged = {c["name"]: c["converged"] for c in results.calculations}
    assert converged == {"slab": True, "ads": True, "h2": False, "neb-a": False, "neb-b": True}
    (binding,) = results.binding_docs()
    assert binding.unconverged_inputs == ["h2"]
    assert not binding.all_converged
    (neb,) = results.neb_docs()
    assert neb.unconverged_inputs == ["neb-a"]
    # the band's own document on disk says it too
    on_disk = NebDoc.read(out / "neb" / "neb-Cu" / "result.json")
    assert on_disk.meta["unconverged_inputs"] == ["neb-a"]
    assert results.unconverged[:2] == ["h2", "neb-a"]
    assert not results.partial  # unconverged is not missing: everything has a result


def test_tables_and_csv_mark_them(flagged: tuple[Path, StudyResults]) -> None:
    _, results = flagged
    table = format_table(results)
    binding_line = next(line for line in table.splitlines() if line.startswith("H2"))
    assert "*" in binding_line
    assert "NO: h2" in binding_line
    neb_line = next(line for line in table.splitlines() if line.startswith("neb-Cu"))
    assert "*" in neb_line
    assert "neb-a" in neb_line
    assert "did not converge" in table
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(results_csv(results)))}
    assert rows["binding-H2"]["converged"] == "False"
    assert rows["binding-H2"]["unconverged_inputs"] == "h2"
    assert rows["neb-Cu"]["converged"] == "False"
    assert rows["neb-Cu"]["unconverged_inputs"].split(";")[0] == "neb-a"


def test_report_of_the_run_folder_marks_them(flagged: tuple[Path, StudyResults]) -> None:
    out, results = flagged
    report = build_report(out)
    (binding,) = report.bindings
    assert binding["status"] == "unconverged"
    assert "h2" in binding["note"]
    (neb,) = report.nebs
    assert neb["status"] == "unconverged"
    assert "neb-a" in neb["note"]
    assert neb["climbing_index"] == results.neb[0]["climbing_index"]  # ringed in the plot


def test_figures_mark_unconverged_inputs_and_name_the_backend(tmp_path: Path) -> None:
    entry = {"ligand": "OAm", "E_b_eV": -1.2, "composition": "CsPbBr3"}
    plain = plot_binding_energies([entry], tmp_path / "a.png", backend="chgnet").read_bytes()
    hatched = plot_binding_energies(
        [{**entry, "unconverged": True}], tmp_path / "b.png", backend="chgnet"
    ).read_bytes()
    other = plot_binding_energies([entry], tmp_path / "c.png", backend="mock").read_bytes()
    assert plain != hatched
    assert plain != other
    band = {
        "label": "bulk",
        "reaction_coordinate": [0.0, 1.0, 2.0, 3.0],
        "energies": [0.0, 0.2, 0.25, 0.0],
        "tangential_forces": [0.0, -0.3, 0.1, 0.0],
    }
    straight = plot_neb_profiles([band], tmp_path / "n1.png", backend="chgnet").read_bytes()
    ringed = plot_neb_profiles(
        [{**band, "climbing_index": 2}], tmp_path / "n2.png", backend="chgnet"
    ).read_bytes()
    assert straight != ringed
    assert composition_label(3.0) == "CsPbBr3"
    assert composition_label(2) == "CsPbBr2I"
    assert composition_label(1.5) == "CsPbBr1.5I1.5"
    assert composition_label(None) == ""
