"""Set-up of AnnData and MuData: validation before anything is written, the cell graph, the field lists."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data.fields import (
    CategoricalObsField,
    LayerField,
    MuDataCategoricalObsField,
    MuDataLayerField,
    ObsmField,
)

from .._constants import DEFAULT_GRAPH_KEY, SIAM_REGISTRY_KEYS
from .._utils import check_batch_complete, check_finite, check_n_obs, check_signal, get_layer, is_count_matrix
from ._fields import MuDataObspField, ObspField
from ._inputs import check_coordinates, check_same_cells, is_mudata
from ._knn import cell_graph


def validate_adata(
    adata, *, layer=None, graph_key=None, spatial_key=None, batch_key=None, protein_obsm_key=None
) -> None:
    """Check an AnnData before anything is written to it."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    check_n_obs(adata.n_obs)
    X = get_layer(adata, layer)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    check_finite(X, where)
    check_signal(X, where)
    if graph_key is not None and graph_key not in adata.obsp:
        raise KeyError(
            f"Graph {graph_key!r} is not in adata.obsp (keys: {list(adata.obsp.keys())}). "
            "Run `sc.pp.neighbors` / `squidpy.gr.spatial_neighbors` first, or leave it unset to build a kNN graph."
        )
    if spatial_key is not None and spatial_key not in adata.obsm:
        raise KeyError(
            f"Spatial coordinates {spatial_key!r} are not in adata.obsm (keys: {list(adata.obsm.keys())}). "
            "Pass the obsm key that holds the x/y coordinates (usually 'spatial')."
        )
    if spatial_key is not None:
        check_coordinates(adata.obsm[spatial_key], f"adata.obsm[{spatial_key!r}]")
    check_batch_key(adata.obs, batch_key=batch_key)
    if protein_obsm_key is not None:
        if protein_obsm_key not in adata.obsm:
            raise KeyError(
                f"Protein values {protein_obsm_key!r} are not in adata.obsm (keys: {list(adata.obsm.keys())}). "
                "Pass the obsm key holding the (CLR-normalised) protein matrix."
            )
        values = adata.obsm[protein_obsm_key]
        check_finite(values, f"adata.obsm[{protein_obsm_key!r}]")


def check_batch_key(*obs_frames, batch_key: str | None = None) -> None:
    """Refuse a ``batch_key`` that is no column of any of the ``obs`` frames, or that has missing values."""
    if batch_key is None:
        return
    frame = next((o for o in obs_frames if batch_key in o), None)
    if frame is None:
        raise KeyError(f"batch_key {batch_key!r} is not a column of obs.")
    check_batch_complete(frame[batch_key], batch_key)


def validate_mudata(mdata, modalities, *, rna_layer=None, protein_layer=None, batch_key=None, batch_mod=None):
    """Check a MuData for ``setup_mudata``; returns the RNA matrix and the protein values (or ``None``)."""
    if modalities is None or "rna_layer" not in modalities:
        raise ValueError(
            "setup_mudata needs modalities={'rna_layer': <RNA modality>, 'protein_layer': <protein modality>}, "
            f"e.g. {{'rna_layer': 'rna', 'protein_layer': 'prot'}}; modalities present: {list(mdata.mod)}."
        )
    for arg, mod in modalities.items():
        if mod is not None and mod not in mdata.mod:
            raise KeyError(
                f"modalities[{arg!r}]={mod!r} is not a modality of the MuData ({list(mdata.mod)})."
            )
    rna_mod, protein_mod = modalities["rna_layer"], modalities.get("protein_layer")
    protein_values = None
    if protein_mod is not None:
        protein_values = get_layer(mdata.mod[protein_mod], protein_layer)
        check_finite(protein_values, f"the {protein_mod!r} modality")
    X = get_layer(mdata.mod[rna_mod], rna_layer)
    check_n_obs(mdata.n_obs)
    check_finite(X, f"the {rna_mod!r} modality")
    check_signal(X, f"the {rna_mod!r} modality")
    check_same_cells(mdata, rna_mod, protein_mod)
    check_batch_key(mdata.obs if batch_mod is None else mdata.mod[batch_mod].obs, batch_key=batch_key)
    return X, protein_values


def build_graph(
    adata,
    *,
    layer=None,
    graph_key=None,
    spatial_key=None,
    batch_key=None,
    spatial_weight=0.5,
    graph_mode=None,
    protein_obsm_key=None,
    protein_weight=0.5,
    n_neighbors=15,
    n_pcs=50,
    n_spatial_neighbors=6,
    **_,
):
    """The cell graph that ``setup_anndata`` registers (given graph and/or built kNN, protein, spatial)."""
    X = get_layer(adata, layer)
    coords = None if spatial_key is None else np.asarray(adata.obsm[spatial_key])
    groups = None if (batch_key is None or spatial_key is None) else adata.obs[batch_key].to_numpy()
    protein = None if protein_obsm_key is None else np.asarray(adata.obsm[protein_obsm_key])
    return cell_graph(
        X,
        given=None if graph_key is None else adata.obsp[graph_key],
        coords=coords,
        groups=groups,
        protein=protein,
        graph_mode=graph_mode,
        spatial_weight=spatial_weight,
        protein_weight=protein_weight,
        n_neighbors=n_neighbors,
        n_pcs=n_pcs,
        n_spatial_neighbors=n_spatial_neighbors,
        is_counts=is_count_matrix(X),
    )


def mudata_graph(X, protein_values, *, protein_weight=0.5, n_neighbors=15, n_pcs=50):
    """The cell graph that ``setup_mudata`` registers when none is given: RNA kNN joined with protein kNN."""
    return cell_graph(
        X,
        protein=protein_values,
        protein_weight=protein_weight,
        n_neighbors=n_neighbors,
        n_pcs=n_pcs,
        is_counts=is_count_matrix(X),
    )


def anndata_fields(*, layer, batch_key, graph_key, protein_obsm_key) -> list:
    """scvi-tools fields of an AnnData set-up: expression, batch, cell graph and optional protein values."""
    fields = [
        LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
        CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        ObspField(SIAM_REGISTRY_KEYS.GRAPH_KEY, graph_key),
    ]
    if protein_obsm_key is not None:
        fields.append(ObsmField(SIAM_REGISTRY_KEYS.PROTEIN_KEY, protein_obsm_key))
    return fields


def mudata_fields(modalities, *, rna_layer, protein_layer, batch_key, graph_key) -> list:
    """scvi-tools fields of a MuData set-up (``modalities`` as scvi's modalities attribute dict)."""
    fields = [
        MuDataLayerField(
            REGISTRY_KEYS.X_KEY,
            rna_layer,
            mod_key=modalities.rna_layer,
            is_count_data=False,
            mod_required=True,
        ),
        MuDataCategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key, mod_key=modalities.batch_key),
        MuDataObspField(SIAM_REGISTRY_KEYS.GRAPH_KEY, graph_key, mod_key=None),
    ]
    if modalities.protein_layer is not None:
        fields.append(
            MuDataLayerField(
                SIAM_REGISTRY_KEYS.PROTEIN_KEY,
                protein_layer,
                mod_key=modalities.protein_layer,
                is_count_data=False,
                mod_required=True,
            )
        )
    return fields


__all__ = [
    "DEFAULT_GRAPH_KEY",
    "anndata_fields",
    "build_graph",
    "check_batch_key",
    "is_mudata",
    "mudata_fields",
    "mudata_graph",
    "validate_adata",
    "validate_mudata",
]
