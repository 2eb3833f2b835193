"""pqdflow: DFT workflows for perovskite quantum-dot surface chemistry.

Builds CsPbBr3 / CsPbBr(x)I(3-x) surface models with ligands (OAc/OAm, AnHI, TMSBr),
writes VASP PBE/PAW inputs, runs the study with FireWorks + custodian or locally with an
ASE calculator, and parses binding energies and halide-migration barriers.

Subpackages
-----------
pqdflow.structures
    Pure structure builders (bulk, slabs, ligands, adsorption, vacancies, NEB endpoints).
pqdflow.workflows
    VASP input sets, dry run, local engine, FireWorks workflows.
pqdflow.analysis
    Parsers, binding/activation energies, tables and plots, vibrational analysis.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pqdflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
