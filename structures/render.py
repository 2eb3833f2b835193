"""Pictures of structures for checking by eye: a top view and a side view in one PNG."""

from __future__ import annotations

import io
from pathlib import Path

from ase import Atoms
from ase.visualize.plot import plot_atoms
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pqdflow.fileio import atomic_write_bytes

__all__ = ["render_png"]


def render_png(atoms: Atoms, path: str | Path, *, title: str | None = None, dpi: int = 90) -> Path:
    """Write a PNG with the top view (down -z) and side view (along +y) of ``atoms``.

    Uses matplotlib's Agg canvas directly (no pyplot state, no display needed) and
    :func:`ase.visualize.plot.plot_atoms`; the file is written atomically.

    Parameters
    ----------
    atoms
        Structure to draw (not modified).
    path
        Target ``.png`` file.
    title
        Figure title (the formula and cell lengths are appended).
    dpi
        Resolution, dots per inch.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    fig = Figure(figsize=(9.0, 4.6))
    FigureCanvasAgg(fig)
    top, side = fig.subplots(1, 2)
    # the cell outline is left out: ASE draws it as hundreds of patches (4x slower)
    plot_atoms(atoms, top, rotation="0x,0y,0z", radii=0.6, show_unit_cell=0)
    plot_atoms(atoms, side, rotation="-90x,0y,0z", radii=0.6, show_unit_cell=0)
    top.set_title("top view (down z)")
    side.set_title("side view (along y)")
    for ax in (top, side):
        ax.set_xlabel("Å")
    lengths = " x ".join(f"{v:.2f}" for v in atoms.cell.lengths())
    heading = title or atoms.get_chemical_formula()
    fig.suptitle(f"{heading}  ({atoms.get_chemical_formula()}, cell {lengths} Å)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
