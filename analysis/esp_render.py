"""Picture of an ESP map: the density isosurface coloured by the ESP, atoms inside.

:func:`plot_esp_map` ray-casts the isosurface of an :class:`~pqdflow.analysis.esp.EspGrid`
(orthographic camera, Lambert + specular shading from the density gradient), colours it with
the ESP in kcal/mol (red negative, white zero, blue positive: the usual convention), draws
the molecule as balls and sticks seen through the semi-transparent surface, marks the
minimum and maximum of the map, and adds a colour bar. Two views, front and back, along the
molecule's smallest principal axis. Pure numpy + matplotlib; no 3D toolkit is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.data import covalent_radii
from ase.data.colors import jmol_colors
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from pqdflow.analysis.esp import (
    BOHR3,
    KCAL_MOL_PER_EV,
    EspGrid,
    EspMapDoc,
    FloatArray,
    sample_periodic,
)
from pqdflow.errors import InputError

__all__ = ["plot_esp_map"]

_SURFACE_ALPHA = 0.78
_STEP = 0.08  # Å along each ray
_MARGIN = 3.8  # Å around the atoms: the 0.001 surface lies within ~3 Å of a nucleus


def _camera(atoms_pos: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Right, up and view vectors: largest principal axis across, smallest towards us."""
    centred = atoms_pos - atoms_pos.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred + 1e-9 * np.eye(3))
    right, up, view = vectors[:, 2], vectors[:, 1], vectors[:, 0]
    if np.linalg.det(np.column_stack([right, up, view])) < 0:
        view = -view
    return right, up, view


def _shade(normal: FloatArray, view: FloatArray, light: FloatArray) -> tuple[Any, Any]:
    lambert = np.clip(normal @ light, 0.0, 1.0)
    half = light + view
    half /= np.linalg.norm(half)
    specular = np.clip(normal @ half, 0.0, 1.0) ** 40
    return 0.42 + 0.58 * lambert, 0.12 * specular


def _balls(atoms_pos: FloatArray, numbers: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Spheres drawing the molecule: atoms, and sticks as chains of small spheres."""
    centres, radii, colours = [], [], []
    for pos, z in zip(atoms_pos, numbers, strict=True):
        centres.append(pos)
        radii.append(0.12 + 0.35 * covalent_radii[z])
        colours.append(jmol_colors[z])
    n = len(atoms_pos)
    for i in range(n):
        for j in range(i + 1, n):
            d = float(np.linalg.norm(atoms_pos[j] - atoms_pos[i]))
            if d < 1.15 * (covalent_radii[numbers[i]] + covalent_radii[numbers[j]]):
                for t in np.linspace(0.0, 1.0, max(3, int(d / 0.07))):
                    centres.append(atoms_pos[i] + t * (atoms_pos[j] - atoms_pos[i]))
                    radii.append(0.09)
                    colours.append(jmol_colors[numbers[i] if t < 0.5 else numbers[j]])
    return np.array(centres), np.array(radii), np.array(colours)


def _render_view(
    grid: EspGrid,
    positions: FloatArray,
    right: FloatArray,
    up: FloatArray,
    view: FloatArray,
    iso: float,
    norm: Normalize,
    pixel: float,
) -> tuple[FloatArray, dict[str, Any]]:
    """RGB image of one view and the geometry needed to place markers."""
    cell = np.asarray(grid.atoms.cell[:], dtype=float)
    inv = np.linalg.inv(cell)
    centre = positions.mean(axis=0)
    rel = positions - centre
    u_lim = np.abs(rel @ right).max() + _MARGIN
    v_lim = np.abs(rel @ up).max() + _MARGIN
    depth = np.linalg.norm(rel, axis=1).max() + _MARGIN
    us = np.arange(-u_lim, u_lim, pixel)
    vs = np.arange(v_lim, -v_lim, -pixel)
    uu, vv = np.meshgrid(us, vs)
    origin = centre + uu[..., None] * right + vv[..., None] * up + depth * view
    steps = np.arange(0.0, 2.0 * depth, _STEP)
    hit_t = np.full(uu.shape, np.nan)
    for row in range(uu.shape[0]):
        pts = origin[row][:, None, :] - steps[None, :, None] * view
        rho = sample_periodic(grid.density, (pts.reshape(-1, 3) @ inv)).reshape(pts.shape[:2])
        inside = rho >= iso
        any_hit = inside.any(axis=1)
        k = np.argmax(inside, axis=1)
        ok = any_hit & (k > 0)
        kk = k[ok]
        r0 = rho[ok, kk - 1]
        r1 = rho[ok, kk]
        hit_t[row, ok] = steps[kk - 1] + _STEP * (iso - r0) / (r1 - r0)
    hit = np.isfinite(hit_t)
    image = np.ones((*uu.shape, 3))
    light = view + 0.55 * up - 0.35 * right
    light /= np.linalg.norm(light)
    # atoms and sticks (seen through the surface)
    centres, radii, colours = _balls(positions, grid.atoms.numbers)
    best = np.full(uu.shape, np.inf)
    atom_rgb = np.ones((*uu.shape, 3))
    for c, r, col in zip(centres, radii, colours, strict=True):
        oc = origin - c
        b = oc @ view
        disc = b**2 - ((oc**2).sum(axis=-1) - r**2)
        mask = disc > 0
        t = np.where(mask, b - np.sqrt(np.where(mask, disc, 0.0)), np.inf)
        closer = mask & (t < best)
        if closer.any():
            best[closer] = t[closer]
            p = origin[closer] - t[closer, None] * view
            normal = (p - c) / r
            diffuse, spec = _shade(normal, view, light)
            atom_rgb[closer] = np.clip(col * diffuse[:, None] + spec[:, None], 0.0, 1.0)
    has_atom = np.isfinite(best)
    image[has_atom] = atom_rgb[has_atom]
    # the isosurface
    p = origin[hit] - hit_t[hit, None] * view
    frac = p @ inv
    esp = sample_periodic(grid.esp, frac) * KCAL_MOL_PER_EV
    h = 0.25  # Å: about one grid spacing, so the normals do not show the voxels
    grad = np.column_stack(
        [
            sample_periodic(grid.density, (p + h * e) @ inv)
            - sample_periodic(grid.density, (p - h * e) @ inv)
            for e in np.eye(3)
        ]
    )
    normal = -grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-30)
    diffuse, spec = _shade(normal, view, light)
    surface = colormaps["RdBu"](norm(esp))[:, :3] * diffuse[:, None] + spec[:, None]
    behind = np.where(has_atom[hit][:, None], atom_rgb[hit], surface)
    image[hit] = np.clip(_SURFACE_ALPHA * surface + (1 - _SURFACE_ALPHA) * behind, 0.0, 1.0)
    geometry = {"centre": centre, "depth": depth, "extent": (-u_lim, u_lim, -v_lim, v_lim)}
    geometry["hit_t"] = hit_t
    geometry["us"], geometry["vs"] = us, vs
    return image, geometry


def plot_esp_map(
    grid: EspGrid,
    doc: EspMapDoc,
    path: str | Path,
    *,
    title: str | None = None,
    vmax: float | None = None,
    pixel: float = 0.06,
    dpi: int = 110,
) -> Path:
    """Draw the ESP map of ``grid`` (front and back views) with a colour bar in kcal/mol.

    Parameters
    ----------
    grid
        Density and ESP of the molecule.
    doc
        Its :func:`~pqdflow.analysis.esp.esp_map` (isovalue, extremes to mark).
    path
        PNG file to write.
    title
        Figure title; default: formula, charge, isovalue and the extremes.
    vmax
        Colour range ``[-vmax, vmax]`` in kcal/mol, white at zero; default the largest
        ``|ESP|`` on the surface, rounded up to 5.
    pixel
        Pixel size in Å.
    dpi
        Resolution of the PNG.

    Raises
    ------
    InputError
        A non-positive ``vmax`` or ``pixel``.
    """
    if vmax is not None and not vmax > 0:
        raise InputError(f"vmax = {vmax!r}; must be a positive ESP in kcal/mol")
    if not pixel > 0:
        raise InputError(f"pixel = {pixel!r}; must be a positive length in Å")
    extreme = max(abs(doc.min["kcal_mol"]), abs(doc.max["kcal_mol"]))
    top = float(vmax) if vmax is not None else 5.0 * np.ceil(extreme / 5.0)
    norm = Normalize(-top, top)
    positions = grid.atoms.get_positions()
    right, up, view = _camera(positions)
    iso = doc.isovalue / BOHR3
    views = [("front", right, up, view), ("back", -right, up, -view)]
    fig = Figure(figsize=(9.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, (label, r, u, v) in zip(axes, views, strict=True):
        image, geo = _render_view(grid, positions, r, u, v, iso, norm, pixel)
        ax.imshow(image, extent=geo["extent"], interpolation="bilinear")
        for key, marker in (("min", "v"), ("max", "^")):
            site = doc.min if key == "min" else doc.max
            point = np.asarray(site["position"])
            rel = point - geo["centre"]
            pu, pv, pt = rel @ r, rel @ u, geo["depth"] - rel @ v
            iu = int(np.clip(np.searchsorted(geo["us"], pu), 0, len(geo["us"]) - 1))
            iv = int(np.clip(np.searchsorted(-geo["vs"], -pv), 0, len(geo["vs"]) - 1))
            visible = abs(geo["hit_t"][iv, iu] - pt) < 0.4
            if visible:
                ax.plot(pu, pv, marker, ms=9, mfc="k", mec="w", mew=1.2)
                ax.annotate(
                    f"{key} {site['kcal_mol']:+.1f}",
                    (pu, pv),
                    xytext=(6, 6),
                    textcoords="offset points",
                    fontsize=8,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "w", "alpha": 0.8, "lw": 0},
                )
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
    mappable = ScalarMappable(norm=norm, cmap="RdBu")
    bar = fig.colorbar(mappable, ax=axes, orientation="vertical", shrink=0.8)
    bar.set_label("ESP (kcal/mol)")
    if title is None:
        title = (
            f"{doc.formula} ({doc.charge:+d}): ESP on the {doc.isovalue:g} e/bohr$^3$ "
            f"density surface, min {doc.min['kcal_mol']:+.1f} ({doc.min['symbol']}), "
            f"max {doc.max['kcal_mol']:+.1f} ({doc.max['symbol']}) kcal/mol"
        )
    fig.suptitle(title, fontsize=10)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out
