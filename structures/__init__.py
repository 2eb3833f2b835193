"""Structure builders of pqdflow: bulk, slabs, ligands, adsorption, vacancies/NEB, export.

Everything here is a pure function returning new ASE ``Atoms`` (inputs are never modified)
with the builder's choices recorded in ``atoms.info``; lengths are in Å.
"""

from __future__ import annotations

from pqdflow.structures.adsorption import (
    SITES,
    SURFACE_PRESETS,
    Site,
    build_passivated_surface,
    find_clashes,
    place_ligand,
    surface_sites,
)
from pqdflow.structures.bulk import (
    CSPBBR3_A,
    CSPBI3_A,
    allowed_x,
    build_bulk,
    build_mixed_halide,
    vegard_a,
)
from pqdflow.structures.defects import (
    Hop,
    build_halide_vacancy,
    build_neb_endpoints,
    check_endpoints,
    default_n_images,
    enumerate_halide_hops,
    hop_distance,
    interpolate_band,
)
from pqdflow.structures.io import from_structure, read_structure, to_structure, write_structure
from pqdflow.structures.ligands import (
    DEFAULT_CHAIN_LENGTH,
    FULL_CHAIN_LENGTH,
    REFERENCE_SPECIES,
    Ligand,
    build_ligand,
    build_ligand_reference,
    build_reference_species,
    get_ligand,
    known_ligands,
    register_ligand,
    unregister_ligand,
)
from pqdflow.structures.model_set import MODEL_KINDS, ModelEntry, build_model_set
from pqdflow.structures.render import render_png
from pqdflow.structures.slabs import (
    TERMINATIONS,
    build_slab,
    ligand_indices,
    slab_layers,
    top_layer_indices,
)

__all__ = [
    "CSPBBR3_A",
    "CSPBI3_A",
    "DEFAULT_CHAIN_LENGTH",
    "FULL_CHAIN_LENGTH",
    "MODEL_KINDS",
    "REFERENCE_SPECIES",
    "SITES",
    "SURFACE_PRESETS",
    "TERMINATIONS",
    "Hop",
    "Ligand",
    "ModelEntry",
    "Site",
    "allowed_x",
    "build_bulk",
    "build_halide_vacancy",
    "build_ligand",
    "build_ligand_reference",
    "build_mixed_halide",
    "build_model_set",
    "build_neb_endpoints",
    "build_passivated_surface",
    "build_reference_species",
    "build_slab",
    "check_endpoints",
    "default_n_images",
    "enumerate_halide_hops",
    "find_clashes",
    "from_structure",
    "get_ligand",
    "hop_distance",
    "interpolate_band",
    "known_ligands",
    "ligand_indices",
    "place_ligand",
    "read_structure",
    "register_ligand",
    "render_png",
    "slab_layers",
    "surface_sites",
    "to_structure",
    "top_layer_indices",
    "unregister_ligand",
    "vegard_a",
    "write_structure",
]
