"""The manifest of a study folder: what each sub-folder holds and how results combine.

The dry run (``pqdflow inputs``) and the local/FireWorks runs (``pqdflow run``) write
``manifest.json`` into their output folder: one :class:`ManifestEntry` per calculation or
NEB folder, plus the plan's binding reactions and NEB paths. ``pqdflow report`` reads it back
with :func:`read_manifest` as typed specs, so a report combines the same calculations the
plan did, whichever route produced them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pqdflow import __version__
from pqdflow.documents.plan import BindingSpec, NebSpec
from pqdflow.errors import StudyError

__all__ = ["MANIFEST_FILE", "Manifest", "ManifestEntry", "read_manifest"]

#: File name of the manifest in a study folder.
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class ManifestEntry:
    """One calculation or NEB folder.

    Attributes
    ----------
    name
        Calculation (or NEB) name.
    path
        Folder relative to the study folder.
    kind
        ``bulk``, ``slab``, ``molecule``, ``adsorbed`` or ``neb``.
    inputs_sha256
        SHA-256 of the inputs (VASP: the input files with the POTCAR as its spec).
    formula_units
        Formula units in the cell (1 for NEB folders).
    role
        ``model``, ``reference``, ``ligand_reference``, ``neb_initial``, ``neb_final``, ``neb``.
    meta
        The plan's metadata for this calculation.
    """

    name: str
    path: str
    kind: str
    inputs_sha256: str = ""
    formula_units: int = 1
    role: str = "model"
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManifestEntry:
        """From a manifest row; ``path`` defaults to the name, a missing count to 1."""
        row = dict(data)
        row.setdefault("path", row.get("name"))
        if row.get("formula_units") is None:
            row["formula_units"] = 1
        return cls(**row)


@dataclass(frozen=True)
class Manifest:
    """The content of ``manifest.json`` plus what changed when it was written.

    Attributes
    ----------
    study
        Study name.
    calculations
        One entry per folder (calculations first, then NEB folders).
    bindings, nebs
        The plan's binding reactions and NEB paths.
    written
        Names of the folders written by the call that produced this manifest (empty on an
        unchanged re-run; empty when read back from disk).
    path
        The manifest file.
    run
        For a ``pqdflow run`` folder: the backend, its settings and the plan's fingerprint
        the folder belongs to (empty for a dry run).
    """

    study: str
    calculations: list[ManifestEntry]
    bindings: list[BindingSpec]
    nebs: list[NebSpec]
    written: list[str]
    path: Path
    run: dict[str, Any] = field(default_factory=dict)

    def entry(self, name: str) -> ManifestEntry | None:
        """Return the entry called ``name``, or None."""
        return next((e for e in self.calculations if e.name == name), None)

    def folder(self, name: str) -> Path:
        """Absolute folder of ``name`` (its entry's path, else a folder of that name)."""
        entry = self.entry(name)
        return self.path.parent / (entry.path if entry else name)

    def as_dict(self) -> dict[str, Any]:
        """Return the content of ``manifest.json`` (no timestamps: re-runs are identical)."""
        return {
            "study": self.study,
            "pqdflow_version": __version__,
            "calculations": [asdict(c) for c in self.calculations],
            "bindings": [b.as_dict() for b in self.bindings],
            "nebs": [n.as_dict() for n in self.nebs],
            **({"run": self.run} if self.run else {}),
        }

    def text(self) -> str:
        """Return the JSON text written to ``manifest.json``."""
        return json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | Path) -> Manifest:
        """Inverse of :meth:`as_dict` (``written`` is empty).

        Raises
        ------
        StudyError
            If ``data`` is not a pqdflow manifest.
        """
        try:
            return cls(
                study=str(data["study"]),
                calculations=[ManifestEntry.from_dict(e) for e in data["calculations"]],
                bindings=[BindingSpec.from_dict(b) for b in data.get("bindings", [])],
                nebs=[NebSpec.from_dict(n) for n in data.get("nebs", [])],
                written=[],
                path=Path(path),
                run=dict(data.get("run") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise StudyError(f"{path} is not a pqdflow manifest ({exc!r})") from exc


def read_manifest(folder: str | Path) -> Manifest:
    """Read ``manifest.json`` of a study folder (dry run or run).

    Raises
    ------
    StudyError
        If the manifest is missing, not JSON or not a pqdflow manifest.
    """
    path = Path(folder) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StudyError(
            f"cannot read the manifest {path}: {exc}; write the study folder first "
            "(pqdflow inputs or pqdflow run)"
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("calculations"), list):
        raise StudyError(f"{path} has no 'calculations' list; is it a pqdflow manifest?")
    return Manifest.from_dict(data, path)
