"""``scsiam.tl.siamese_clu``: the scanpy-style entry point."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from natsort import natsorted

from .._utils import (
    check_finite,
    check_keywords,
    check_n_clusters,
    check_n_obs,
    check_signal,
    get_layer,
    is_main_process,
    package_version,
    quiet_libraries,
    write_atomically,
)
from ..data import _inputs as inputs
from ..data import resolve_graph_mode, smooth_rows


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
    progress_bar: bool | None = None,
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
        (the spatial kNN graph of the set-up, itself included) this many times before the clusters
        are read off, which smooths domains on tissue (0, the default: off; see the benchmarks
        page for when it helps).
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
        Show one progress bar over the training phases (default: on, except when the
        environment variable ``CI`` is set). Nothing else is printed unless scanpy's
        ``settings.verbosity`` asks for it (``"info"``: short notes on each step).
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
    ``obs[f"{key_added}_confidence"]``
        With ``add_confidence=True``: the largest soft-assignment probability of each cell.
    ``uns[f"{key_added}_clu"]``
        ``"params"``: parameters of the run, including the number of clusters used
        (``n_clusters``) and the number holding cells at the end (``n_clusters_found``; a warning
        says when it is smaller), with ``n_clusters=None`` the estimate (``"auto_k"``), and
        with ``train_kwargs={"partition_choice": "modularity"}`` both partitions' check scores
        (``"partition_check"``);
        ``"version"``: the scsiam version.

    Nothing else is written: set-up and training run on a private working copy.
    """
    from scanpy import logging as logg

    from ..model import SiameseCluModel

    start = logg.info("running scsiam (Siamese clustering)")
    # options checked before anything is computed: a misspelt key fails at once, naming the accepted ones
    check_keywords(model_kwargs or {}, SiameseCluModel.model_options() - {"n_clusters"}, "model_kwargs")
    check_keywords(train_kwargs or {}, SiameseCluModel.train_options(), "train_kwargs")
    target, data = inputs.resolve_container(adata, rna_mod)
    protein = inputs.protein_values(target, data, protein_obsm_key, protein_mod)
    X = get_layer(data, layer)
    check_n_obs(data.n_obs)
    k = check_n_clusters(n_clusters, data.n_obs)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    check_finite(X, where)
    check_signal(X, where)
    graph_name, graph = inputs.choose_graph(target, data, neighbors_key=neighbors_key, obsp=obsp)
    coords = inputs.spatial_coords(target, data, spatial_key)
    batch = inputs.batch_values(target, data, batch_key)
    _check_options(n_top_genes, key_added, spatial_smoothing, coords)

    work = inputs.working_copy(
        data,
        X,
        batch=batch,
        graph=graph,
        graph_name=graph_name,
        coords=coords,
        protein=protein,
        n_top_genes=n_top_genes,
    )
    with quiet_libraries():  # "Seed set to ...", squidpy's graph-building notes
        if random_state is not None:
            import scvi

            scvi.settings.seed = int(random_state)
        SiameseCluModel.setup_anndata(
            work, graph_mode=graph_mode, spatial_weight=spatial_weight, **inputs.working_setup_kwargs(work)
        )
    model = SiameseCluModel(work, n_clusters=k, **dict(model_kwargs or {}))
    logg.info(f"    training ({model.module.backbone} gene branch, {work.n_obs} cells, {work.n_vars} genes)")
    model.train(**{"progress_bar": progress_bar, **dict(train_kwargs or {})})
    z = model.get_latent_representation()
    q = model.predict(soft=True)
    if spatial_smoothing:
        q = smooth_rows(q, model.get_spatial_graph(), spatial_smoothing)
    clusters = _clusters(q, model.n_clusters_, key_added)
    params = {
        "n_clusters": int(model.n_clusters_),
        "n_clusters_found": len(clusters.categories),
        "n_clusters_estimated": bool(k is None),
        "graph": graph_name,
        "likelihood": model.module.likelihood,
        "n_genes": int(work.n_vars),
        "n_epochs": int(len(model.history_.get("train_loss", pd.DataFrame()).index)),
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
    if model.partition_check_ is not None and model.partition_check_.get("rule") != "final":
        params["partition_check"] = dict(model.partition_check_)  # only when a check was asked for
    if not is_main_process():  # under DDP only rank 0 writes results
        return model if return_model else None
    # everything is computed: write the documented keys now, all or nothing
    out = target.copy() if copy else target
    obs_new = {f"{key_added}_clusters": clusters}
    if add_confidence:
        obs_new[f"{key_added}_confidence"] = q.max(1).astype(np.float32)
    obsm_new = {f"X_{key_added}": z.astype(np.float32), f"{key_added}_probabilities": q.astype(np.float32)}
    write_atomically(
        out,
        obsm=obsm_new,
        obs=obs_new,
        uns={f"{key_added}_clu": {"params": params, "version": package_version()}},
    )
    added = (
        [f"obsm[{k!r}]" for k in obsm_new]
        + [f"obs[{k!r}]" for k in obs_new]
        + [f"uns[{key_added + '_clu'!r}]"]
    )
    logg.info("    finished", time=start, deep="added\n    " + ",\n    ".join(added))
    if return_model:
        return (out, model) if copy else model
    return out if copy else None


def _check_options(n_top_genes, key_added, spatial_smoothing, coords) -> None:
    if n_top_genes is not None and (
        not isinstance(n_top_genes, int | np.integer) or isinstance(n_top_genes, bool) or n_top_genes < 1
    ):
        raise ValueError(
            f"n_top_genes must be a positive number of genes or None (all genes), got {n_top_genes!r}."
        )
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"key_added must be a non-empty string, got {key_added!r}.")
    if not isinstance(spatial_smoothing, int | np.integer) or isinstance(spatial_smoothing, bool):
        raise TypeError(f"spatial_smoothing must be an integer (steps), got {spatial_smoothing!r}.")
    if spatial_smoothing < 0:
        raise ValueError(
            f"spatial_smoothing must be a non-negative integer (steps), got {spatial_smoothing!r}."
        )
    if spatial_smoothing and coords is None:
        raise ValueError("spatial_smoothing needs spatial coordinates: pass spatial_key (e.g. 'spatial').")


def _clusters(q: np.ndarray, n_clusters: int, key_added: str) -> pd.Categorical:
    """Hard labels of soft assignments as categorical strings in natural order; warns about empty clusters."""
    labels = q.argmax(1).astype(str)
    clusters = pd.Categorical(labels, categories=natsorted(np.unique(labels)))
    n_found = len(clusters.categories)
    if n_found < n_clusters:
        warnings.warn(
            f"{n_found} of the {n_clusters} clusters hold cells after training: the others emptied "
            f"out during the clustering phase (obsm['{key_added}_probabilities'] keeps one column per "
            "cluster). To keep more, pass train_kwargs={'reseed_empty': True} (moves the centres of empty "
            "clusters into the largest one) or a smaller train_kwargs={'cluster_weight': ...}.",
            UserWarning,
            stacklevel=3,
        )
    return clusters
