"""Figures for reports: binding-energy bars and NEB energy profiles.

Both functions draw with matplotlib's non-interactive Agg canvas (no display, no global
``pyplot`` state), write one PNG (or any format matplotlib knows from the suffix) and
return its path. Inputs are plain dicts, so scripts, the report and the workflow engine can
all call them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pqdflow.errors import InputError

__all__ = ["composition_label", "plot_binding_energies", "plot_neb_profiles"]

_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3")


def _finite(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a number, got {value!r}") from exc
    return out


def composition_label(x: Any) -> str:
    """``CsPbBr(x)I(3-x)`` as a formula: 3 -> ``CsPbBr3``, 2 -> ``CsPbBr2I``, None -> ``""``."""
    if x is None:
        return ""
    br = float(x)
    i = 3.0 - br

    def part(symbol: str, n: float) -> str:
        if n <= 0:
            return ""
        return symbol if n == 1 else f"{symbol}{n:g}"

    return f"CsPb{part('Br', br)}{part('I', i)}"


def _title(ax: Any, what: str, backend: str | None, compositions: Sequence[str]) -> None:
    """Title naming the backend and the compositions (mock numbers flagged)."""
    about = [f"backend: {backend}" if backend else "backend: not given"]
    names = [c for c in dict.fromkeys(compositions) if c]
    if names:
        about.append(", ".join(names))
    if backend == "mock":
        about.append("mock: plumbing, not physics")
    ax.set_title(f"{what}\n{'; '.join(about)}", fontsize=9)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=150)
    return path


def plot_binding_energies(
    entries: Sequence[Mapping[str, Any]], path: str | Path, *, backend: str | None = None
) -> Path:
    """Bar chart of binding energies, one bar per entry (like Extended Data Fig. 4c).

    The title names the backend and the compositions. A bar resting on an unconverged
    relaxation is hatched and its value marked ``*``.

    Parameters
    ----------
    entries
        Dicts with ``"ligand"`` (str), ``"E_b_eV"`` (binding energy, eV; NaN or None for a
        missing value, drawn as an empty slot marked "n/a") and optionally ``"label"``
        (bar label; defaults to the ligand), ``"composition"`` (e.g. ``"CsPbBr3"``) and
        ``"unconverged"`` (bool). More negative means stronger binding.
    path
        Output image file; parent folders are created.
    backend
        Backend that computed the energies, for the title.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InputError
        No entries, or an entry without ``ligand``/``E_b_eV``.
    """
    if not entries:
        raise InputError("plot_binding_energies needs at least one entry, got none")
    labels: list[str] = []
    values: list[float] = []
    ligands: list[str] = []
    for i, entry in enumerate(entries):
        if "ligand" not in entry or "E_b_eV" not in entry:
            raise InputError(
                f"binding entry {i} must have keys 'ligand' and 'E_b_eV', got {sorted(entry)}"
            )
        ligand = str(entry["ligand"])
        raw = entry["E_b_eV"]
        value = math.nan if raw is None else _finite(raw, f"E_b_eV of entry {i}")
        ligands.append(ligand)
        labels.append(str(entry.get("label") or ligand))
        values.append(value)
    colour_of = {lig: _COLOURS[k % len(_COLOURS)] for k, lig in enumerate(dict.fromkeys(ligands))}
    fig = Figure(figsize=(max(3.5, 0.9 * len(values) + 1.5), 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(values))
    heights = [0.0 if math.isnan(v) else v for v in values]
    bars = ax.bar(x, heights, color=[colour_of[lig] for lig in ligands], edgecolor="black", lw=0.6)
    finite = [v for v in values if not math.isnan(v)]
    span = (max(finite) - min(finite)) if len(finite) > 1 else (abs(finite[0]) if finite else 1.0)
    pad = 0.03 * (span or 1.0)
    flagged = [bool(e.get("unconverged")) for e in entries]
    for bar, v, bad in zip(bars, values, flagged, strict=True):
        if math.isnan(v):
            ax.text(bar.get_x() + bar.get_width() / 2, 0.0, "n/a", ha="center", va="bottom")
            continue
        if bad:
            bar.set_hatch("///")
        offset = -pad if v < 0 else pad
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            v + offset,
            f"{v:.2f}" + ("*" if bad else ""),
            ha="center",
            va="top" if v < 0 else "bottom",
            fontsize=8,
        )
    if finite:
        lo, hi = min(0.0, *finite), max(0.0, *finite)
        ax.set_ylim(lo - 0.15 * (hi - lo or 1.0), hi + 0.15 * (hi - lo or 1.0))
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(
        x,
        labels,
        rotation=30 if len(values) > 4 else 0,
        ha="right" if len(values) > 4 else "center",
    )
    ax.set_ylabel("Binding energy $E_b$ (eV)")
    ax.set_xlabel("Ligand")
    if any(flagged):
        ax.set_xlabel("Ligand    (hatched, *: an input relaxation did not converge)")
    _title(ax, "Binding energies", backend, [str(e.get("composition") or "") for e in entries])
    return _save(fig, path)


def plot_neb_profiles(
    profiles: Sequence[Mapping[str, Any]], path: str | Path, *, backend: str | None = None
) -> Path:
    """Energy profiles of one or more NEB bands on shared axes (e.g. control vs treated).

    Each band is drawn as its images (dots) and a smooth curve through them: the cubic
    Hermite spline whose slopes are minus the tangential forces when those are given (as
    ASE's NEBTools fits a band), else a natural cubic spline
    (:func:`~pqdflow.analysis.barriers.band_spline`, the curve the spline barrier comes
    from). The climbing image is ringed; an unconverged band (or one on unconverged
    endpoints) is dashed and marked ``*`` in the legend. The title names the backend and
    the compositions.

    Parameters
    ----------
    profiles
        Dicts with ``"label"`` (legend text), ``"reaction_coordinate"`` (cumulative path
        length, Å) and ``"energies"`` (eV, relative to the band's reference), equal lengths
        of at least 2. Optional: ``"tangential_forces"`` (eV/Å, one per image),
        ``"climbing_index"`` (int), ``"unconverged"`` (bool), ``"composition"`` (str), and
        ``"spline"``: a dict with ``"s"`` (Å) and ``"E"`` (eV) arrays drawn as the curve.
    path
        Output image file; parent folders are created.
    backend
        Backend that computed the bands, for the title.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    InputError
        No profiles, a missing key, or mismatched lengths.
    """
    from pqdflow.analysis.barriers import band_spline

    if not profiles:
        raise InputError("plot_neb_profiles needs at least one profile, got none")
    fig = Figure(figsize=(4.8, 3.8), layout="constrained")
    ax = fig.add_subplot()
    climbing_drawn = False
    for i, prof in enumerate(profiles):
        missing = [k for k in ("label", "reaction_coordinate", "energies") if k not in prof]
        if missing:
            raise InputError(f"NEB profile {i} lacks keys {missing}")
        s = np.asarray(prof["reaction_coordinate"], dtype=float)
        e = np.asarray(prof["energies"], dtype=float)
        if s.ndim != 1 or s.shape != e.shape or len(s) < 2:
            raise InputError(
                f"NEB profile {prof['label']!r}: need equal-length 1-D arrays of >= 2 points, "
                f"got {s.shape} coordinates and {e.shape} energies"
            )
        colour = _COLOURS[i % len(_COLOURS)]
        bad = bool(prof.get("unconverged"))
        style = "--" if bad else "-"
        label = str(prof["label"]) + (" *" if bad else "")
        if prof.get("composition"):
            label += f" ({prof['composition']})"
        spline = prof.get("spline")
        if spline:
            ax.plot(
                np.asarray(spline["s"], float), np.asarray(spline["E"], float), style, color=colour
            )
        else:
            increasing = bool(np.all(np.diff(s) > 0))  # a hop with no band may not be
            curve = band_spline(s, e, prof.get("tangential_forces"))[0] if increasing else None
            if curve is not None:
                grid = np.linspace(s[0], s[-1], 200)
                ax.plot(grid, curve(grid), style, color=colour)
            else:
                ax.plot(s, e, style, color=colour)
        ax.plot(s, e, "o", color=colour, label=label)
        ci = prof.get("climbing_index")
        if ci is not None and 0 <= int(ci) < len(s):
            ax.plot(
                s[int(ci)],
                e[int(ci)],
                "o",
                ms=11,
                mfc="none",
                mec="black",
                label=None if climbing_drawn else "climbing image",
            )
            climbing_drawn = True
    ax.axhline(0.0, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("Reaction coordinate (Å)")
    ax.set_ylabel("Relative energy (eV)")
    ax.legend(frameon=False, fontsize=8)
    compositions = [str(p.get("composition") or "") for p in profiles]
    title = "NEB energy profiles"
    if any(p.get("unconverged") for p in profiles):
        title += " (* not converged)"
    _title(ax, title, backend, compositions)
    return _save(fig, path)
