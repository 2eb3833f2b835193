"""CHGNet as an ASE calculator that computes only what it is asked for.

chgnet's own ``CHGNetCalculator`` answers every request with energy, forces, stress and
magnetic moments (task ``"efsm"``), and takes each derivative with ``create_graph=True``
(the second-order graph training needs). A fixed-cell relaxation or an NEB band asks for
energy and forces only. :class:`InferenceCHGNetCalculator` runs the same model and the same
graph converter, and

* takes one backward pass, for the forces (and the strain derivative, the stress, only when
  ``"stress"`` is requested: a cell relaxation);
* builds no second-order graph;
* skips the backward pass entirely for an energy-only request.

Measured (``benchmarks/chgnet_calculator.py``, CHGNet 0.3.0, one CPU thread, medians of 7
calls, 2026-12-01): the 94-atom control surface with an oleate fill took 0.292 s per force
call through ``CHGNetCalculator`` and 0.156 s here; the 83-atom ligand-covered NEB endpoint
0.179 s and 0.088 s; the 40-atom bulk NEB host 0.047 s and 0.029 s. Energies are identical;
forces agree to 4e-5 eV/Å (float32 summation order). The benchmark repeats the comparison on
the machine it runs on.

The prediction goes through ``CHGNet._compute`` on chgnet's own ``BatchedGraph``, the path
``CHGNet.forward`` takes. Should a chgnet release change that internal interface, the
calculator warns once and falls back to ``CHGNet.predict_graph`` (same numbers, the old
cost).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from chgnet.model.model import BatchedGraph
from pymatgen.io.ase import AseAtomsAdaptor

__all__ = ["InferenceCHGNetCalculator", "predict_chgnet"]

#: eV/Å³ to GPa (CHGNet's stress unit before the calculator's ``stress_weight``).
_EV_PER_A3_IN_GPA = 160.21766208
#: ASE stress unit: eV/Å³ per GPa.
_GPA = 1.0 / _EV_PER_A3_IN_GPA


def predict_chgnet(model: Any, atoms: Atoms, properties: list[str]) -> dict[str, Any]:
    """Return CHGNet's ``energy`` (eV) and, as requested, ``forces`` and ``stress_gpa``.

    ``forces`` in eV/Å, shape ``(n_atoms, 3)``; ``stress_gpa`` the 3x3 stress in GPa
    (CHGNet's convention, ``(1/V) dE/d(strain)``). One forward pass and at most one backward
    pass, without a second-order graph (see the module docstring).

    Raises
    ------
    AttributeError, TypeError
        If the installed chgnet's internal interface differs (the calculator falls back).
    """
    want_forces = "forces" in properties
    want_stress = "stress" in properties
    structure = AseAtomsAdaptor.get_structure(atoms)
    device = next(model.parameters()).device
    graph = model.graph_converter(structure).to(device)
    model.eval()
    comp_energy = 0.0 if model.composition_model is None else model.composition_model([graph])
    with torch.set_grad_enabled(want_forces or want_stress):
        batched = BatchedGraph.from_graphs(
            [graph],
            bond_basis_expansion=model.bond_basis_expansion,
            angle_basis_expansion=model.angle_basis_expansion,
            compute_stress=want_stress,
        )
        prediction = model._compute(batched, compute_force=False, compute_stress=False)
        per_atom = prediction["e"]  # per atom for an intensive model, else total
        n_atoms = len(atoms)
        scale = float(n_atoms) if model.is_intensive else 1.0
        total = per_atom * scale
        out: dict[str, Any] = {}
        inputs: list[torch.Tensor] = []
        if want_forces:
            inputs.append(batched.atom_positions[0])
        if want_stress:
            inputs.append(batched.strains[0])
        if inputs:
            grads = torch.autograd.grad(total.sum(), inputs)
            if want_forces:
                out["forces"] = -grads[0].detach().cpu().numpy().astype(float)
            if want_stress:
                strain_grad = grads[-1].detach().cpu().numpy().astype(float)
                volume = float(batched.volumes[0])
                stress_gpa = strain_grad / volume * _EV_PER_A3_IN_GPA
                out["stress_gpa"] = stress_gpa
    energy = (per_atom.detach() + comp_energy) * scale
    out["energy"] = float(energy.reshape(-1)[0])
    return out


class InferenceCHGNetCalculator(Calculator):
    """ASE calculator running a loaded CHGNet model for the requested properties only.

    Parameters
    ----------
    model
        A loaded ``chgnet.model.CHGNet`` (shared between calculators; not copied).
    stress_weight
        Factor from CHGNet's GPa to ASE's stress unit (chgnet's calculator default: eV/Å³
        per GPa).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]  # noqa: RUF012

    def __init__(self, model: Any, *, stress_weight: float = _GPA, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.stress_weight = float(stress_weight)
        self._fallback = False  # set once the internal interface turned out to differ

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Compute ``properties`` (default: energy and forces) for ``atoms``."""
        properties = list(properties or ["energy", "forces"])
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        if not self._fallback:
            try:
                out = predict_chgnet(self.model, self.atoms, properties)
            except (AttributeError, TypeError) as exc:
                warnings.warn(
                    f"this chgnet's internal interface differs ({exc}); computing through "
                    "CHGNet.predict_graph instead (same numbers, about twice the cost)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._fallback = True
            else:
                self._store(out)
                return
        self._store(self._predict_graph(self.atoms, properties))

    def _predict_graph(self, atoms: Atoms, properties: list[str]) -> dict[str, Any]:
        task = "efs" if "stress" in properties else "ef"
        structure = AseAtomsAdaptor.get_structure(atoms)
        graph = self.model.graph_converter(structure)
        pred = self.model.predict_graph(graph, task=task)
        scale = float(len(structure)) if self.model.is_intensive else 1.0
        out: dict[str, Any] = {"energy": float(pred["e"]) * scale, "forces": pred["f"]}
        if "s" in pred:
            out["stress_gpa"] = pred["s"]
        return out

    def _store(self, out: dict[str, Any]) -> None:
        self.results["energy"] = out["energy"]
        self.results["free_energy"] = out["energy"]
        if "forces" in out:
            self.results["forces"] = np.asarray(out["forces"], dtype=float)
        if "stress_gpa" in out:
            full = np.asarray(out["stress_gpa"], dtype=float) * self.stress_weight
            self.results["stress"] = full[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
