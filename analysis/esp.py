"""Electrostatic-potential (ESP) maps of molecules, as in Extended Data Fig. 4b of the paper.

The chemist's ESP is the electrostatic potential felt by a unit *positive* test charge,
``V(r) = sum_A Z_A / |r - R_A| - int rho(r') / |r - r'| dr'``: positive near exposed nuclei
and acidic protons, negative over lone pairs, pi clouds and halides. It is mapped onto an
electron-density isosurface (default 0.001 e/bohr^3) and reported in eV (per +e, i.e. volts)
and kcal/mol (1 eV = 23.0605 kcal/mol); red is negative, blue positive.

**Sign.** DFT codes write the potential energy of an *electron*: VASP's LOCPOT with LVHAR
(``V_ionic + int n/|r-r'|``, eV) and GPAW's ``get_electrostatic_potential`` (eV). Both are
``-V``; :func:`esp_grid_from_electron_potential` flips the sign, and it is the only place
that does.

**Vacuum level zero.** A periodic code fixes the cell average of the potential, not its
value far from the molecule. By the mean-value theorem the average of ``V`` over a sphere of
radius ``R`` (centred on the molecule) that encloses all of its charge is exactly ``Q/R`` for
an isolated molecule of net charge ``Q``, whatever its dipole or higher moments. So the raw
map is shifted to make its average over such a sphere (``R`` half the smallest cell width)
equal to ``Q/R``; for a charged molecule the leading potential of the compensating
background, ``(2 pi Q / 3 V_cell) |r - c|^2``, is removed as well. Image interactions beyond
that are below 0.1 kcal/mol for the 12 Å-vacuum boxes of the ligand builders.

Grids are periodic: value ``[i, j, k]`` belongs to the fractional point ``(i/n1, j/n2,
k/n3)`` (VASP's, GPAW's and ASE's cube convention); densities are in e/Å^3 in memory.
Sources: GPAW (:func:`pqdflow.workflows.engine.gpaw_calc.gpaw_esp_grid`), VASP LOCPOT + CHGCAR
(:func:`read_vasp_esp`) and the cube pair written here (:func:`read_esp_cubes`). The picture
is drawn by :func:`pqdflow.analysis.esp_render.plot_esp_map`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from ase import Atoms
from ase import units as ase_units
from ase.io.cube import read_cube, write_cube
from scipy.ndimage import map_coordinates

from pqdflow.errors import InputError, ParseError
from pqdflow.fileio import atomic_write_json

__all__ = [
    "BOHR3",
    "COULOMB_EV_A",
    "DEFAULT_ISOVALUE",
    "KCAL_MOL_PER_EV",
    "EspGrid",
    "EspMapDoc",
    "FloatArray",
    "esp_grid_from_electron_potential",
    "esp_map",
    "isosurface_points",
    "read_esp_cubes",
    "read_vasp_esp",
    "sample_periodic",
    "surface_esp",
    "write_esp_cubes",
    "write_vasp_esp_files",
]

#: Density isovalue of the map (e/bohr^3), the usual choice for molecular ESP surfaces.
DEFAULT_ISOVALUE = 0.001
#: kcal/mol per eV.
KCAL_MOL_PER_EV = 1.0 / (ase_units.kcal / ase_units.mol)
#: e^2 / (4 pi eps0) in eV Å: the potential of a unit charge at 1 Å is 14.40 V.
COULOMB_EV_A = ase_units.Hartree * ase_units.Bohr
#: Å^3 per bohr^3 (densities: e/bohr^3 = e/Å^3 * BOHR3).
BOHR3 = ase_units.Bohr**3

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EspGrid:
    """Density and chemist's ESP of one molecule on periodic grids (one in-memory form).

    Attributes
    ----------
    atoms
        The molecule in its cell (positions Å).
    density
        Electron density (e/Å^3), shape ``(n1, n2, n3)``.
    esp
        Chemist's ESP (eV per +e, vacuum level zero); its own grid shape.
    charge
        Net charge of the molecule (e).
    source
        Where it came from (``"gpaw"``, ``"vasp"``, ``"cube"``, ...).
    vacuum
        How the vacuum level was set (shell radius Å, largest density on the shell
        e/bohr^3, shift applied eV).
    """

    atoms: Atoms
    density: FloatArray
    esp: FloatArray
    charge: int = 0
    source: str = ""
    vacuum: dict[str, Any] = field(default_factory=dict)


def sample_periodic(grid: FloatArray, frac: FloatArray) -> FloatArray:
    """Trilinear interpolation of a periodic grid at fractional points ``frac`` (N, 3)."""
    shape = np.asarray(grid.shape, dtype=float)
    coords = (np.asarray(frac, dtype=float) * shape).T
    return np.asarray(map_coordinates(grid, coords, order=1, mode="grid-wrap"), dtype=float)


def _centre(atoms: Atoms) -> FloatArray:
    pos = atoms.get_positions()
    return np.asarray((pos.max(axis=0) + pos.min(axis=0)) / 2.0, dtype=float)


def _fibonacci_sphere(n: int) -> FloatArray:
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = np.pi * (1.0 + 5.0**0.5) * k
    r = np.sqrt(1.0 - z**2)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def _grid_cartesian(shape: tuple[int, ...], cell: FloatArray) -> FloatArray:
    axes = [np.arange(n) / n for n in shape]
    frac = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return np.asarray(frac @ cell, dtype=float)


def _align_vacuum(
    esp_raw: FloatArray, density: FloatArray, atoms: Atoms, charge: int
) -> tuple[FloatArray, dict[str, Any]]:
    """Shift a chemist's ESP (any constant) so that the vacuum level is zero (module doc)."""
    cell = np.asarray(atoms.cell[:], dtype=float)
    volume = abs(float(np.linalg.det(cell)))
    widths = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    radius = 0.5 * float(widths.min())
    centre = _centre(atoms)
    shell = centre + radius * _fibonacci_sphere(2000)
    shell_frac = np.linalg.solve(cell.T, shell.T).T
    shell_mean = float(sample_periodic(esp_raw, shell_frac).mean())
    shell_density = float(sample_periodic(density, shell_frac).max()) * BOHR3
    target = COULOMB_EV_A * charge / radius
    aligned = esp_raw - shell_mean + target
    if charge:
        # remove the compensating background's parabola, zero on the shell
        diff = _grid_cartesian(esp_raw.shape, cell) - centre
        frac = np.linalg.solve(cell.T, diff.reshape(-1, 3).T).T
        frac -= np.round(frac)
        r2 = ((frac @ cell) ** 2).sum(axis=1).reshape(esp_raw.shape)
        aligned = aligned + COULOMB_EV_A * 2.0 * np.pi * charge / (3.0 * volume) * (radius**2 - r2)
    info = {
        "method": "sphere mean = Q/R",
        "shell_radius": radius,
        "shell_density_max": shell_density,
        "shift": target - shell_mean,
        "background_parabola": bool(charge),
    }
    return np.asarray(aligned, dtype=float), info


def _check_grids(atoms: Atoms, density: FloatArray, potential: FloatArray) -> None:
    for name, grid in (("density", density), ("potential", potential)):
        if grid.ndim != 3 or min(grid.shape) < 2:
            raise InputError(f"{name} grid has shape {grid.shape}; need a 3D grid (n1, n2, n3)")
        if not np.all(np.isfinite(grid)):
            raise InputError(f"{name} grid holds NaN or infinite values")
    if abs(atoms.cell.volume) < 1e-9:
        raise InputError("the atoms have no cell; ESP grids need the periodic cell they fill")


def esp_grid_from_electron_potential(
    atoms: Atoms,
    density: FloatArray,
    potential: FloatArray,
    *,
    charge: int = 0,
    source: str = "",
) -> EspGrid:
    """Build an :class:`EspGrid` from a code's electron potential energy and density.

    Parameters
    ----------
    atoms
        The molecule in its periodic cell (Å).
    density
        Electron density (e/Å^3) on a periodic grid.
    potential
        Electrostatic potential energy of an *electron* (eV; LOCPOT with LVHAR, GPAW's
        ``get_electrostatic_potential``), any constant offset. Its sign is flipped here.
    charge
        Net charge of the molecule (e), for the vacuum level.
    source
        Recorded in the grid.

    Raises
    ------
    InputError
        Grids that are not 3D or not finite, atoms without a cell, or a box so small that
        the density on the vacuum sphere exceeds 1e-4 e/bohr^3.
    """
    density = np.asarray(density, dtype=float)
    potential = np.asarray(potential, dtype=float)
    _check_grids(atoms, density, potential)
    esp, info = _align_vacuum(-potential, density, atoms, int(charge))
    if info["shell_density_max"] > 1e-4:
        raise InputError(
            f"the box is too small for a vacuum level: the density reaches "
            f"{info['shell_density_max']:.1e} e/bohr^3 at {info['shell_radius']:.1f} Å from "
            "the molecule; allowed: <= 1e-4 (use >= 6 Å of vacuum on each side)"
        )
    return EspGrid(atoms.copy(), density, esp, int(charge), source, info)


def isosurface_points(density: FloatArray, isovalue: float) -> FloatArray:
    """Points where the density crosses ``isovalue`` along grid edges (fractional, (N, 3)).

    These are the vertices marching cubes would place (linear interpolation on each grid
    edge whose ends straddle the isovalue), without the triangles; periodic. ``density``
    and ``isovalue`` in the same unit.
    """
    shape = np.asarray(density.shape, dtype=float)
    points: list[FloatArray] = []
    for axis in range(3):
        d0 = density
        d1 = np.roll(density, -1, axis=axis)
        cross = np.nonzero((d0 - isovalue) * (d1 - isovalue) < 0)
        a, b = d0[cross], d1[cross]
        p = np.column_stack(cross).astype(float)
        p[:, axis] += (isovalue - a) / (b - a)
        points.append(p / shape)
    return np.asarray(np.concatenate(points) % 1.0, dtype=float)


def _site(atoms: Atoms, point: FloatArray, value: float) -> dict[str, Any]:
    cell = np.asarray(atoms.cell[:], dtype=float)
    diff = point - atoms.get_positions()
    frac = np.linalg.solve(cell.T, diff.T).T
    frac -= np.round(frac)
    dist = np.linalg.norm(frac @ cell, axis=1)
    i = int(np.argmin(dist))
    heavy = np.where(atoms.numbers > 1, dist, np.inf)
    j = int(np.argmin(heavy)) if np.isfinite(heavy).any() else i
    return {
        "index": i,
        "symbol": atoms[i].symbol,
        "distance": round(float(dist[i]), 3),
        "heavy_index": j,
        "heavy_symbol": atoms[j].symbol,
        "heavy_distance": round(float(dist[j]), 3),
        "position": [round(float(x), 3) for x in point],
        "eV": float(value),
        "kcal_mol": float(value * KCAL_MOL_PER_EV),
    }


@dataclass
class EspMapDoc:
    """ESP on a density isosurface: extremes, their sites, per-atom ranges.

    Attributes
    ----------
    formula, charge, source
        The molecule and where the grids came from.
    isovalue
        Density of the surface (e/bohr^3).
    n_points
        Surface points sampled (marching-cubes vertices).
    min, max
        The extremes: value (``eV`` per +e, ``kcal_mol``), the position on the surface (Å)
        and the nearest atom (``index``, ``symbol``, ``distance`` Å): its "site"; also the
        nearest non-hydrogen atom (``heavy_index``, ``heavy_symbol``, ``heavy_distance``).
    by_atom
        For every atom that is nearest to some surface points: its index, symbol and the
        min/max ESP over those points (kcal/mol).
    vacuum
        How the vacuum level was set (see :class:`EspGrid`).
    """

    formula: str
    charge: int
    source: str
    isovalue: float
    n_points: int
    min: dict[str, Any]
    max: dict[str, Any]
    by_atom: list[dict[str, Any]]
    vacuum: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EspMapDoc:
        """Inverse of :meth:`as_dict`."""
        return cls(**data)

    def write(self, path: str | Path) -> Path:
        """Write the document as JSON (atomically); return the path."""
        atomic_write_json(path, self.as_dict())
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> EspMapDoc:
        """Read a document written by :meth:`write`.

        Raises
        ------
        ParseError
            If the file is not such a document.
        """
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ParseError(path, f"not an ESP map document ({exc})") from exc

    def summary(self) -> str:
        """One line: min and max in kcal/mol with their sites."""

        def where(site: dict[str, Any]) -> str:
            text = f"{site['symbol']}{site['index']} {site['distance']:.1f} Å"
            if site.get("heavy_index", site["index"]) != site["index"]:
                text += (
                    f", {site['heavy_symbol']}{site['heavy_index']} {site['heavy_distance']:.1f} Å"
                )
            return text

        return (
            f"{self.formula} ({self.charge:+d}) ESP on {self.isovalue:g} e/bohr^3: "
            f"min {self.min['kcal_mol']:+.1f} kcal/mol ({where(self.min)}), "
            f"max {self.max['kcal_mol']:+.1f} kcal/mol ({where(self.max)})"
        )


def surface_esp(grid: EspGrid, isovalue: float = DEFAULT_ISOVALUE) -> tuple[FloatArray, FloatArray]:
    """Cartesian surface points (Å) and the ESP there (eV) for a density isovalue (e/bohr^3).

    Raises
    ------
    InputError
        If ``isovalue`` is not positive or the density never crosses it.
    """
    if not (isinstance(isovalue, int | float) and math.isfinite(isovalue) and isovalue > 0):
        raise InputError(f"isovalue = {isovalue!r}; must be a positive density in e/bohr^3")
    cell = np.asarray(grid.atoms.cell[:], dtype=float)
    frac = isosurface_points(grid.density, isovalue / BOHR3)
    if len(frac) == 0:
        raise InputError(
            f"the density never crosses {isovalue:g} e/bohr^3 (max "
            f"{grid.density.max() * BOHR3:.3g}); choose a smaller isovalue"
        )
    return np.asarray(frac @ cell, dtype=float), sample_periodic(grid.esp, frac)


def esp_map(grid: EspGrid, isovalue: float = DEFAULT_ISOVALUE) -> EspMapDoc:
    """Sample the ESP on the density isosurface and report extremes and sites.

    Parameters
    ----------
    grid
        Density and ESP (from any source).
    isovalue
        Density of the surface, e/bohr^3 (default 0.001).
    """
    points, values = surface_esp(grid, isovalue)
    atoms = grid.atoms
    cell = np.asarray(atoms.cell[:], dtype=float)
    diff = points[:, None, :] - atoms.get_positions()[None, :, :]
    frac = np.einsum("pak,kl->pal", diff, np.linalg.inv(cell))
    frac -= np.round(frac)
    nearest = np.linalg.norm(frac @ cell, axis=2).argmin(axis=1)
    by_atom = []
    for i in np.unique(nearest):
        v = values[nearest == i] * KCAL_MOL_PER_EV
        by_atom.append(
            {
                "index": int(i),
                "symbol": atoms[int(i)].symbol,
                "min_kcal_mol": float(v.min()),
                "max_kcal_mol": float(v.max()),
            }
        )
    lo, hi = int(np.argmin(values)), int(np.argmax(values))
    return EspMapDoc(
        formula=atoms.get_chemical_formula(mode="hill"),
        charge=grid.charge,
        source=grid.source,
        isovalue=float(isovalue),
        n_points=len(values),
        min=_site(atoms, points[lo], float(values[lo])),
        max=_site(atoms, points[hi], float(values[hi])),
        by_atom=by_atom,
        vacuum=dict(grid.vacuum),
    )


# ----------------------------------------------------------------------------- files


def write_esp_cubes(grid: EspGrid, directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``<name>_density.cube`` (e/bohr^3) and ``<name>_esp.cube`` (Hartree per +e).

    Gaussian's cube conventions (atomic units), so VMD, Avogadro or GaussView show the map
    directly; the ESP is the chemist's, vacuum level zero. Returns both paths.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / f"{name}_density.cube", folder / f"{name}_esp.cube")
    data = (grid.density * BOHR3, grid.esp / ase_units.Hartree)
    comments = (
        f"pqdflow electron density (e/bohr^3) of {grid.atoms.get_chemical_formula()}",
        f"pqdflow chemist's ESP (Hartree/e, vacuum 0, charge {grid.charge:+d}) "
        f"source={grid.source}",
    )
    for path, values, comment in zip(paths, data, comments, strict=True):
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as handle:
            write_cube(handle, grid.atoms, data=values, comment=comment)
        tmp.replace(path)
    return paths


def read_esp_cubes(density_cube: str | Path, esp_cube: str | Path, *, charge: int = 0) -> EspGrid:
    """Read a cube pair written by :func:`write_esp_cubes` (or in the same conventions).

    Raises
    ------
    ParseError
        A file that is not a cube file, or two cubes of different molecules.
    """
    parsed = []
    for path in (Path(density_cube), Path(esp_cube)):
        try:
            with path.open() as handle:
                parsed.append(read_cube(handle))
        except (OSError, ValueError, IndexError) as exc:
            raise ParseError(path, f"not a readable cube file ({exc})") from exc
    atoms = parsed[0]["atoms"]
    other = parsed[1]["atoms"]
    if len(atoms) != len(other) or not np.allclose(atoms.positions, other.positions, atol=1e-3):
        raise ParseError(esp_cube, f"its atoms differ from those of {density_cube}")
    atoms.pbc = True
    density = np.asarray(parsed[0]["data"], dtype=float) / BOHR3
    esp = np.asarray(parsed[1]["data"], dtype=float) * ase_units.Hartree
    _check_grids(atoms, density, esp)
    return EspGrid(atoms, density, esp, int(charge), "cube", {"method": "as written"})


def read_vasp_esp(locpot: str | Path, chgcar: str | Path, *, charge: int = 0) -> EspGrid:
    """Read a VASP LOCPOT (LVHAR = .TRUE.) and CHGCAR (LCHARG) into an :class:`EspGrid`.

    LOCPOT with LVHAR holds ``V_ionic + V_Hartree`` as an electron's potential energy (eV,
    VASP wiki, LVHAR); CHGCAR holds ``rho * V_cell`` (pymatgen divides by the volume).

    Raises
    ------
    ParseError
        Unreadable files, or a LOCPOT and CHGCAR of different structures.
    """
    from pymatgen.core import Structure
    from pymatgen.io.vasp.outputs import Chgcar, Locpot

    from pqdflow.structures.io import from_structure

    try:
        pot = Locpot.from_file(str(locpot))
    except Exception as exc:  # pymatgen raises many types for a bad file
        raise ParseError(locpot, f"not a readable LOCPOT ({exc})") from exc
    try:
        chg = Chgcar.from_file(str(chgcar))
    except Exception as exc:
        raise ParseError(chgcar, f"not a readable CHGCAR ({exc})") from exc
    if len(pot.structure) != len(chg.structure) or not np.allclose(
        pot.structure.lattice.matrix, chg.structure.lattice.matrix, atol=1e-4
    ):
        raise ParseError(chgcar, f"its structure differs from that of {locpot}")
    atoms = from_structure(Structure.from_sites(pot.structure))
    density = np.asarray(chg.data["total"], dtype=float) / chg.structure.volume
    potential = np.asarray(pot.data["total"], dtype=float)
    try:
        return esp_grid_from_electron_potential(
            atoms, density, potential, charge=charge, source="vasp"
        )
    except InputError as exc:
        raise ParseError(locpot, str(exc)) from exc


def write_vasp_esp_files(
    atoms: Atoms,
    density: FloatArray,
    potential: FloatArray,
    directory: str | Path,
) -> tuple[Path, Path]:
    """Write a LOCPOT + CHGCAR pair as VASP would with LVHAR and LCHARG (pymatgen writers).

    ``density`` in e/Å^3, ``potential`` the electron's potential energy (eV) as in
    :func:`esp_grid_from_electron_potential`; e.g. to pass a GPAW result to VASP tools.
    Returns the LOCPOT and CHGCAR paths.
    """
    from pymatgen.io.vasp.inputs import Poscar
    from pymatgen.io.vasp.outputs import Chgcar, Locpot

    from pqdflow.structures.io import to_structure

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    poscar = Poscar(to_structure(atoms))
    volume = abs(float(atoms.cell.volume))
    Locpot(poscar, {"total": np.asarray(potential, dtype=float)}).write_file(folder / "LOCPOT")
    Chgcar(poscar, {"total": np.asarray(density, dtype=float) * volume}).write_file(
        folder / "CHGCAR"
    )
    return folder / "LOCPOT", folder / "CHGCAR"
