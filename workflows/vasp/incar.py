"""INCAR tag typing and validation: pymatgen's INCAR table plus the VTST tags.

:func:`validate_incar` checks tag names (UPPERCASE, known to VASP or the VTST tools, with a
"did you mean" hint for typos) and value types against the declared type of each tag, and
returns a normalised copy. Used by the presets,
:class:`~pqdflow.workflows.vasp.inputsets.VaspInputSet` and the study schema
(:mod:`pqdflow.workflows.study`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from pymatgen.io.vasp.inputs import Incar

from pqdflow.errors import InputSetError

__all__ = ["validate_incar"]

# VTST tags (Henkelman group) that pymatgen's INCAR table does not list, with their types.
_VTST_TAGS: Mapping[str, str] = MappingProxyType(
    {
        "LCLIMB": "bool",
        "IOPT": "int",
        "ICHAIN": "int",
        "MAXMOVE": "float",
        "TIMESTEP": "float",
        "LNEBCELL": "bool",
        "ILBFGSMEM": "int",
        "LGLOBAL": "bool",
        "LAUTOSCALE": "bool",
        "INVCURV": "float",
        "LLINEOPT": "bool",
        "FDSTEP": "float",
        "LTANGENTOLD": "bool",
        "LDNEB": "bool",
        "JACOBIAN": "float",
        "FTIMEMAX": "float",
        "FTIMEDEC": "float",
        "FTIMEINC": "float",
        "FALPHA": "float",
        "FNMIN": "int",
    }
)
# VASPsol tags (implicit solvation, Mathew et al., J. Chem. Phys. 140, 084106 (2014); LSOL
# itself is in pymatgen's table).
_VASPSOL_TAGS: Mapping[str, str] = MappingProxyType(
    {"EB_K": "float", "TAU": "float", "LAMBDA_D_K": "float", "NC_K": "float", "SIGMA_K": "float"}
)
# VTST-only tags that must not appear without VTST.
_VTST_ONLY = frozenset(_VTST_TAGS)
# pymatgen's table types SPRING as int; VASP reads a real (eV/A^2).
_TYPE_FIXES: Mapping[str, str] = MappingProxyType({"SPRING": "float"})


def _tag_type(tag: str) -> str | None:
    """Return the declared type of a known INCAR tag, or None when the tag is unknown."""
    if tag in _TYPE_FIXES:
        return _TYPE_FIXES[tag]
    if tag in _VTST_TAGS:
        return _VTST_TAGS[tag]
    if tag in _VASPSOL_TAGS:
        return _VASPSOL_TAGS[tag]
    params: Mapping[Any, Any] = Incar.INCAR_PARAMS
    entry = params.get(tag)
    return None if entry is None else str(entry.get("type", "str"))


def _known_tags() -> list[str]:
    return sorted(set(Incar.INCAR_PARAMS) | set(_VTST_TAGS) | set(_VASPSOL_TAGS))


def _check_value(tag: str, value: Any, declared: str) -> Any:
    """Return ``value`` (floats normalised) if it matches ``declared``, else raise."""
    kinds = {k.strip() for k in declared.split("|")}
    scalar = (bool, int, float, str)
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
    elif isinstance(value, int | np.integer):
        if "int" in kinds:
            return int(value)
        if "float" in kinds:
            return float(value)
    elif isinstance(value, float | np.floating):
        if "float" in kinds and math.isfinite(float(value)):
            return float(value)
    elif isinstance(value, str):
        if "str" in kinds:
            return value
    elif isinstance(value, list | tuple) and "list" in kinds:
        if value and all(isinstance(v, scalar) for v in value):
            return list(value)
    raise InputSetError(
        f"INCAR tag {tag} = {value!r} has the wrong type ({type(value).__name__}); "
        f"VASP expects {declared}"
    )


def validate_incar(tags: Mapping[str, Any], *, allow_none: bool = True) -> dict[str, Any]:
    """Check INCAR tag names and value types; return a normalised copy.

    Parameters
    ----------
    tags
        Tag -> value. Tag names must be UPPERCASE VASP tags (pymatgen's INCAR table plus the
        VTST and VASPsol tags). ``None`` means "remove this tag" when ``allow_none``.
    allow_none
        Accept ``None`` values (override semantics).

    Raises
    ------
    InputSetError
        Naming the tag for an unknown tag or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    for tag, value in tags.items():
        if not isinstance(tag, str) or not tag or tag != tag.upper() or not tag.isidentifier():
            raise InputSetError(f"INCAR tag {tag!r} is not an UPPERCASE VASP tag name")
        declared = _tag_type(tag)
        if declared is None:
            close = difflib.get_close_matches(tag, _known_tags(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InputSetError(f"unknown INCAR tag {tag!r} (not a VASP or VTST tag){hint}")
        if value is None:
            if not allow_none:
                raise InputSetError(f"INCAR tag {tag} has no value")
            out[tag] = None
            continue
        out[tag] = _check_value(tag, value, declared)
    return out
