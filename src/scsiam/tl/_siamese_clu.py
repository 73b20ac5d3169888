"""``scsiam.tl.siamese_clu``: the scanpy-style entry point."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from natsort import natsorted

from .._constants import INPUT_GRAPH_KEY
from .._validate import (
    check_batch_complete,
    check_finite,
    check_n_clusters,
    check_n_obs,
    check_not_view,
    get_layer,
    is_count_matrix,
    keep_torch_threads,
)
from ..data._graph import resolve_graph_mode, smooth_rows, spatial_knn_graph

logger = logging.getLogger(__name__)


def siamese_clu(
    adata,
    *,
    n_clusters: int | None = None,
    layer: str | None = None,
    batch_key: str | None = None,
    neighbors_key: str | None = None,
    obsp: str | None = None,
    spatial_key: str | None = None,
    graph_mode: str | None = None,
    spatial_weight: float = 0.5,
    spatial_smoothing: int = 0,
    protein_obsm_key: str | None = None,
    rna_mod: str | None = None,
    protein_mod: str | None = "auto",
    key_added: str = "siamese",
    copy: bool = False,
    random_state: int | None = 0,
    progress_bar: bool = True,
    n_top_genes: int | None = 2000,
    add_confidence: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    train_kwargs: Mapping[str, Any] | None = None,
    return_model: bool = False,
):
    """Cluster cells with scSiameseClu and write the embedding, clusters and soft assignments.

    All fitting happens on a private working copy; the documented keys are written to
    ``adata`` only at the end, so an error leaves ``adata`` as it was. Labels are never read.

    Parameters
    ----------
    adata
        :class:`~anndata.AnnData` (raw counts in ``X`` or ``layer``), or a
        :class:`~mudata.MuData` (RNA and optionally protein modalities), whose top level
        receives the results.
    n_clusters
        Number of clusters; ``None`` estimates it without labels (see ``uns[...]['params']``).
    layer
        Layer holding the counts (default ``X``).
    batch_key
        Column of ``obs`` with batches (a decoder covariate; for spatial data, slices).
    neighbors_key
        Key in ``uns`` of a neighbours result (``sc.pp.neighbors``, squidpy's
        ``"spatial_neighbors"``); its connectivities are used as the cell graph.
    obsp
        Key of a graph in ``obsp`` to use as the cell graph. Not together with ``neighbors_key``.
        When neither is given, a label-free kNN graph is built.
    spatial_key
        Key of coordinates in ``obsm``; a spatial kNN graph then becomes the cell graph (see ``graph_mode``).
    graph_mode
        With ``spatial_key``: ``"spatial"`` (default), ``"both"`` or ``"expression"``; see
        :meth:`~scsiam.SiameseCluModel.setup_anndata`.
    spatial_weight
        Weight of the spatial graph in ``"both"`` mode.
    spatial_smoothing
        With ``spatial_key``: average the soft assignments over each cell's spatial neighbours
        (the 6-nearest-neighbour graph, itself included) this many times before the clusters
        are read off, which smooths domains on tissue (0, the default: off). It helps where
        domains are wide compared with the spacing of cells or spots and blurs thin ones; see
        the benchmarks page.
    protein_obsm_key
        AnnData only: key of a cells × proteins matrix in ``obsm`` (e.g. CLR ADTs) clustered jointly with RNA.
    rna_mod
        MuData only: the RNA modality (default ``"rna"``, else the first modality).
    protein_mod
        MuData only: the protein modality. ``"auto"`` uses a modality named ``"prot"``,
        ``"protein"`` or ``"adt"`` when there is one; ``None`` clusters RNA alone.
    key_added
        Prefix of the written keys.
    copy
        Work on and return a copy.
    random_state
        Seed of torch, numpy, sampling and KMeans; sets ``scvi.settings.seed``, which also seeds
        the global random generators of Python, numpy and torch (as scvi-tools does). ``None`` leaves
        ``scvi.settings.seed`` as it is, and training uses that seed (or 0 when it is unset).
    progress_bar
        Show training progress bars.
    n_top_genes
        Highly variable genes used when the data have more genes (``None``: all genes).
    add_confidence
        Also write ``obs[f"{key_added}_confidence"]``, the maximum soft-assignment probability.
    model_kwargs
        Arguments of :class:`~scsiam.SiameseCluModel`.
    train_kwargs
        Arguments of :meth:`~scsiam.SiameseCluModel.train`.
    return_model
        Also return the trained model.

    Returns
    -------
    ``None`` (or the copy with ``copy=True``; the model, or ``(copy, model)``, with
    ``return_model=True``). Sets:

    ``obsm[f"X_{key_added}"]``
        The fused embedding.
    ``obs[f"{key_added}_clusters"]``
        Cluster labels (categorical strings, natural order).
    ``obsm[f"{key_added}_probabilities"]``
        Soft assignments, rows summing to 1 (spatially smoothed with ``spatial_smoothing``).
    ``uns[f"{key_added}_clu"]["params"]``
        Parameters of the run, including the number of clusters used (``n_clusters``) and the
        number holding cells at the end (``n_clusters_found``; a warning says when it is smaller).
    """
    from ..model import SiameseCluModel

    target, data = _resolve_container(adata, rna_mod)
    protein = _protein_values(target, data, protein_obsm_key, protein_mod)
    layer_matrix = get_layer(data, layer)
    check_n_obs(data.n_obs)
    k = check_n_clusters(n_clusters, data.n_obs)
    check_finite(layer_matrix, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
    graph_name, graph = _choose_graph(target, data, neighbors_key=neighbors_key, obsp=obsp)
    coords = _spatial_coords(target, data, spatial_key)
    if batch_key is not None and batch_key not in target.obs and batch_key not in data.obs:
        raise KeyError(f"batch_key {batch_key!r} is not a column of obs.")
    if n_top_genes is not None and (
        not isinstance(n_top_genes, int | np.integer) or isinstance(n_top_genes, bool) or n_top_genes < 1
    ):
        raise ValueError(f"n_top_genes must be a positive number of genes or None (all genes), got {n_top_genes!r}.")
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"key_added must be a non-empty string, got {key_added!r}.")
    if not isinstance(spatial_smoothing, int | np.integer) or isinstance(spatial_smoothing, bool):
        raise TypeError(f"spatial_smoothing must be an integer (steps), got {spatial_smoothing!r}.")
    if spatial_smoothing < 0:
        raise ValueError(f"spatial_smoothing must be a non-negative integer (steps), got {spatial_smoothing!r}.")
    if spatial_smoothing and coords is None:
        raise ValueError("spatial_smoothing needs spatial coordinates: pass spatial_key (e.g. 'spatial').")

    work = _working_copy(data, target, layer_matrix, batch_key, graph, coords, n_top_genes, random_state)
    if protein is not None:
        work.obsm["protein"] = protein
    if random_state is not None:
        import scvi

        scvi.settings.seed = int(random_state)
    SiameseCluModel.setup_anndata(
        work,
        batch_key="batch" if batch_key is not None else None,
        graph_key=INPUT_GRAPH_KEY if graph is not None else None,
        spatial_key="spatial" if coords is not None else None,
        graph_mode=graph_mode,
        spatial_weight=spatial_weight,
        protein_obsm_key="protein" if protein is not None else None,
    )
    model = SiameseCluModel(work, n_clusters=k, **dict(model_kwargs or {}))
    tk = {"progress_bar": progress_bar, **dict(train_kwargs or {})}
    model.train(**tk)
    z = model.get_latent_representation()
    q = model.predict(soft=True)
    if spatial_smoothing:
        groups = work.obs["batch"].to_numpy() if "batch" in work.obs else None
        q = smooth_rows(q, spatial_knn_graph(coords, groups=groups), spatial_smoothing)
    labels = q.argmax(1).astype(str)
    clusters = pd.Categorical(labels, categories=natsorted(np.unique(labels)))
    n_found = len(clusters.categories)
    if n_found < model.n_clusters_:
        warnings.warn(
            f"{n_found} of the {model.n_clusters_} clusters hold cells after training: the others emptied "
            f"out during the clustering phase (obsm['{key_added}_probabilities'] keeps one column per "
            "cluster). To keep more, pass train_kwargs={'reseed_empty': True} (moves the centres of empty "
            "clusters into the largest one) or a smaller train_kwargs={'cluster_weight': ...}.",
            UserWarning,
            stacklevel=2,
        )
    params = {
        "n_clusters": int(model.n_clusters_),
        "n_clusters_found": n_found,
        "n_clusters_estimated": bool(k is None),
        "graph": graph_name,
        "likelihood": model.module.likelihood,
        "n_genes": int(work.n_vars),
        "n_epochs": int(sum(1 for _ in model.history_.get("train_loss", pd.DataFrame()).index)),
        "key_added": key_added,
    }
    optional = {
        "layer": layer,
        "batch_key": batch_key,
        "spatial_key": spatial_key,
        "random_state": random_state,
        "graph_mode": resolve_graph_mode(graph_mode, True) if spatial_key is not None else None,
        "spatial_smoothing": int(spatial_smoothing) or None,
        "n_proteins": None if protein is None else int(protein.shape[1]),
    }
    params.update({name: v for name, v in optional.items() if v is not None})
    if model.auto_k_ is not None:
        params["auto_k"] = {kk: v for kk, v in model.auto_k_.items() if v is not None}
    import scsiam

    uns_entry = {"params": params, "version": scsiam.__version__}

    if not _is_main_process():  # under DDP only rank 0 writes results
        return model if return_model else None
    # everything is computed: write the documented keys now, all or nothing
    out = target.copy() if copy else target
    obs_new = {f"{key_added}_clusters": pd.Categorical(clusters, categories=clusters.categories)}
    if add_confidence:
        obs_new[f"{key_added}_confidence"] = q.max(1).astype(np.float32)
    write_atomically(
        out,
        obsm={f"X_{key_added}": z.astype(np.float32), f"{key_added}_probabilities": q.astype(np.float32)},
        obs=obs_new,
        uns={f"{key_added}_clu": uns_entry},
    )
    logger.info(
        "added obsm[%r], obs[%r], obsm[%r], uns[%r]",
        f"X_{key_added}",
        f"{key_added}_clusters",
        f"{key_added}_probabilities",
        f"{key_added}_clu",
    )
    if return_model:
        return (out, model) if copy else model
    return out if copy else None


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def write_atomically(target, *, obsm: dict, obs: dict, uns: dict) -> None:
    """Write the entries into ``target``; on any exception (also ``KeyboardInterrupt``) undo them all."""
    missing = object()
    slots = [(target.obsm, obsm), (target.obs, obs), (target.uns, uns)]
    saved = [{k: (store[k] if k in store else missing) for k in new} for store, new in slots]
    try:
        for store, new in slots:
            for k, v in new.items():
                store[k] = v
    except BaseException:
        for (store, new), old in zip(slots, saved, strict=True):
            for k in new:
                if old[k] is missing:
                    if k in store:
                        del store[k]
                else:
                    store[k] = old[k]
        raise


def _resolve_container(adata, rna_mod: str | None = None):
    """(object that receives the results, AnnData whose expression is clustered)."""
    check_not_view(adata)
    if isinstance(adata, AnnData):
        return adata, adata
    try:
        from mudata import MuData
    except ImportError:  # pragma: no cover
        MuData = ()
    if MuData and isinstance(adata, MuData):
        if not adata.mod:
            raise ValueError("The MuData has no modalities.")
        if rna_mod is not None and rna_mod not in adata.mod:
            raise KeyError(f"rna_mod={rna_mod!r} is not a modality of the MuData ({list(adata.mod)}).")
        name = rna_mod or ("rna" if "rna" in adata.mod else next(iter(adata.mod)))
        data = adata.mod[name]
        if data.n_obs != adata.n_obs or not (data.obs_names == adata.obs_names).all():
            # results are written row by row into mdata.obs / mdata.obsm, which follow mdata.obs_names
            raise ValueError(
                f"The {name!r} modality does not hold the MuData's cells in the MuData's order ({data.n_obs} "
                f"cells there, {adata.n_obs} in the MuData), so results could not be written to the right "
                f"cells. Restrict and order the MuData to that modality's cells first: "
                f"`mdata = mdata[mdata.mod[{name!r}].obs_names].copy()`."
            )
        return adata, data
    raise TypeError(f"Expected an AnnData or MuData, got {type(adata).__name__}.")


PROTEIN_MODALITY_NAMES = ("prot", "protein", "adt")


def _protein_values(target, data, protein_obsm_key, protein_mod):
    """The protein matrix to cluster jointly with RNA (a checked private copy), or ``None``."""
    if target is data:  # AnnData
        if protein_obsm_key is None:
            return None
        if protein_obsm_key not in data.obsm:
            raise KeyError(
                f"protein_obsm_key={protein_obsm_key!r} is not in obsm (keys: {list(data.obsm.keys())}). "
                "Pass the obsm key holding the (CLR-normalised) protein matrix."
            )
        values, where = data.obsm[protein_obsm_key], f"obsm[{protein_obsm_key!r}]"
    else:
        if protein_obsm_key is not None:
            raise ValueError(
                "protein_obsm_key is for AnnData input; for MuData name the protein modality with protein_mod."
            )
        if protein_mod == "auto":
            protein_mod = next((m for m in target.mod if m.lower() in PROTEIN_MODALITY_NAMES), None)
            if protein_mod is not None:
                logger.info(
                    "Clustering RNA together with the %r modality (protein_mod=None for RNA alone).",
                    protein_mod,
                )
        if protein_mod is None:
            return None
        if protein_mod not in target.mod:
            raise KeyError(
                f"protein_mod={protein_mod!r} is not a modality of the MuData ({list(target.mod)})."
            )
        prot = target.mod[protein_mod]
        if prot.n_obs != data.n_obs or not (prot.obs_names == data.obs_names).all():
            raise ValueError(
                f"The {protein_mod!r} modality does not hold the same cells in the same order as the RNA modality; "
                "intersect them first (e.g. muon.pp.intersect_obs)."
            )
        values, where = prot.X, f"mdata.mod[{protein_mod!r}].X"
    import scipy.sparse as sp

    values = values.toarray() if sp.issparse(values) else np.array(values, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[0] != data.n_obs:
        raise ValueError(
            f"{where} must be a cells × proteins matrix with {data.n_obs} rows, got shape {values.shape}."
        )
    check_finite(values, where)
    return values


def _choose_graph(target, data, *, neighbors_key, obsp):
    """Resolve the graph the way scanpy does: ``obsp`` or ``uns[neighbors_key]['connectivities_key']``."""
    if obsp is not None and neighbors_key is not None:
        raise ValueError("Pass either obsp or neighbors_key, not both.")
    if obsp is not None:
        for holder in (target, data):
            if obsp in holder.obsp:
                return obsp, holder.obsp[obsp]
        raise KeyError(
            f"obsp={obsp!r} is not in obsp (keys: {list(target.obsp.keys())}). "
            "Compute the graph first (sc.pp.neighbors, squidpy.gr.spatial_neighbors) or leave obsp unset."
        )
    if neighbors_key is not None:
        for holder in (target, data):
            if neighbors_key in holder.uns:
                key = holder.uns[neighbors_key].get("connectivities_key", "connectivities")
                if key not in holder.obsp:
                    raise KeyError(f"uns[{neighbors_key!r}] points to obsp[{key!r}], which is missing.")
                return key, holder.obsp[key]
        raise KeyError(
            f"neighbors_key={neighbors_key!r} is not in uns. Run `sc.pp.neighbors(adata, key_added=...)` first."
        )
    return "built", None


def _spatial_coords(target, data, spatial_key):
    if spatial_key is None:
        return None
    for holder in (target, data):
        if spatial_key in holder.obsm:
            coords = np.asarray(holder.obsm[spatial_key], dtype=np.float64)
            if coords.ndim != 2 or coords.shape[1] < 2 or not np.isfinite(coords).all():
                raise ValueError(f"obsm[{spatial_key!r}] must be finite (n_obs, 2+) coordinates.")
            return coords[:, :2]
    raise KeyError(
        f"spatial_key={spatial_key!r} is not in obsm (keys: {list(target.obsm.keys())}). "
        "Pass the obsm key holding the coordinates (usually 'spatial')."
    )


def _working_copy(data, target, X, batch_key, graph, coords, n_top_genes, random_state) -> AnnData:
    """A lean private AnnData: expression, optional batch/graph/coordinates, HVGs selected."""
    import scipy.sparse as sp

    obs = pd.DataFrame(index=data.obs_names.copy())
    if batch_key is not None:
        col = data.obs[batch_key] if batch_key in data.obs else target.obs[batch_key]
        check_batch_complete(col, batch_key)
        obs["batch"] = pd.Categorical(np.asarray(col).astype(str))
    X = sp.csr_matrix(X, dtype=np.float32, copy=True) if sp.issparse(X) else np.array(X, dtype=np.float32)
    work = AnnData(X=X, obs=obs, var=pd.DataFrame(index=data.var_names.copy()))
    if graph is not None:
        work.obsp[INPUT_GRAPH_KEY] = sp.csr_matrix(graph, dtype=np.float32)
    if coords is not None:
        work.obsm["spatial"] = coords
    if n_top_genes is not None and work.n_vars > n_top_genes:
        work = work[:, _hvg_mask(work, n_top_genes)].copy()
    return work


@keep_torch_threads
def _hvg_mask(work: AnnData, n_top_genes: int) -> np.ndarray:
    import scanpy as sc

    tmp = AnnData(X=work.X.copy())
    if is_count_matrix(work.X):
        try:
            sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat_v3")
            return tmp.var["highly_variable"].to_numpy()
        except (ImportError, ValueError):
            # scikit-misc missing, or its loess fit is singular (few cells): log-normalised flavour
            tmp = AnnData(X=work.X.copy())
            sc.pp.normalize_total(tmp)
            sc.pp.log1p(tmp)
    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat")
    return tmp.var["highly_variable"].to_numpy()
