"""Confidence of the cluster assignments: :func:`scsiam.pl.cluster_confidence`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ._utils import _cluster_categories, _cluster_colors, _finish, _obsm_2d, _umap

_MEASURES = {
    "max_probability": "max. assignment probability",
    "entropy": "normalised assignment entropy",
}


def _confidence(probs: np.ndarray, measure: str) -> np.ndarray:
    """Per-cell maximum probability, or entropy ``-sum p log p / log k`` in [0, 1]."""
    p = np.clip(np.asarray(probs, dtype=float), 0.0, None)
    p = p / np.maximum(p.sum(1, keepdims=True), np.finfo(float).tiny)
    if measure == "max_probability":
        return p.max(1)
    k = p.shape[1]
    if k < 2:
        return np.zeros(p.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    return np.clip(-plogp.sum(1) / np.log(k), 0.0, 1.0)


def cluster_confidence(
    adata,
    *,
    key_added: str = "siamese",
    measure: str = "max_probability",
    basis: str | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """How confidently each cell is assigned to its cluster, per cluster and on an embedding.

    The confidence is computed from the soft assignments ``obsm[f"{key_added}_probabilities"]``:
    either the largest probability of each cell (``"max_probability"``, between ``1/k`` and 1,
    high is confident), or the normalised entropy ``-sum p log p / log k`` (``"entropy"``,
    between 0 and 1, low is confident).

    The left panel shows its distribution in each cluster (box plots, clusters in the order of
    ``obs[f"{key_added}_clusters"]``, in the clusters' colours ``uns[f"{key_added}_clusters_colors"]``
    when present, else scanpy's default palette). The right panel shows the cells on a 2-D
    embedding coloured by the confidence: ``obsm[basis]`` when ``basis`` is given, else
    ``obsm[f"X_{key_added}_umap"]``, else a UMAP of ``obsm[f"X_{key_added}"]`` computed on a
    private copy, so ``adata`` is not modified. In both measures yellow marks confident cells,
    and the least confident cells are drawn on top.

    Parameters
    ----------
    adata
        AnnData (or MuData) with results of :func:`scsiam.tl.siamese_clu`.
    key_added
        Prefix used by :func:`scsiam.tl.siamese_clu`.
    measure
        ``"max_probability"`` or ``"entropy"``.
    basis
        Key of ``obsm`` (or scanpy basis name such as ``"umap"``) of the embedding to draw.
    ax
        Matplotlib axes; when given, only the per-cluster panel is drawn into it.
    show
        Show the figure.
    return_fig
        Return the figure.

    Returns
    -------
    The figure when ``return_fig`` is true; with ``show=False`` the Axes (the two panels'
    ``[per_cluster, embedding]``, or the one given); else ``None``.
    """
    import pandas as pd

    if measure not in _MEASURES:
        raise ValueError(f"measure must be one of {sorted(_MEASURES)}, got {measure!r}.")
    prob_key = f"{key_added}_probabilities"
    if prob_key not in adata.obsm:
        raise KeyError(
            f"obsm[{prob_key!r}] is missing: no soft cluster assignments. "
            f"Run scsiam.tl.siamese_clu(adata, key_added={key_added!r}) first."
        )
    probs = adata.obsm[prob_key]
    probs = np.asarray(probs.to_numpy() if hasattr(probs, "to_numpy") else probs, dtype=float)
    conf = _confidence(probs, measure)
    label = _MEASURES[measure]

    clusters_key = f"{key_added}_clusters"
    if clusters_key in adata.obs:
        clusters = adata.obs[clusters_key]
        categories = _cluster_categories(clusters)
        names = clusters.astype(str).to_numpy()
    else:  # the labels are the argmax of the soft assignments
        names = probs.argmax(1).astype(str)
        categories = _cluster_categories(pd.Series(names))
    colors = _cluster_colors(adata, clusters_key, categories)
    present = [c for c in categories if (names == c).any()]

    # embedding for the right panel (only needed for the two-panel figure)
    xy = None
    if ax is None:
        xy, emb_name = _confidence_embedding(adata, key_added, basis)
        fig, (ax_box, ax_emb) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1, 1.15]})
    else:
        fig, ax_box = ax.figure, ax

    k = probs.shape[1]
    _box_panel(ax_box, conf, names, present, colors, measure, label, k)
    if xy is not None:
        _embedding_panel(fig, ax_emb, xy, conf, measure, label, k, emb_name)
        fig.tight_layout()
        return _finish(fig, show, return_fig, [ax_box, ax_emb])
    return _finish(fig, show, return_fig, ax_box)


def _box_panel(ax_box, conf, names, present: list[str], colors: dict, measure: str, label: str, k: int):
    """Box plots of the confidence of each present cluster, in the clusters' colours."""
    data = [conf[names == c] for c in present]
    bp = ax_box.boxplot(
        data,
        patch_artist=True,
        widths=0.6,
        medianprops={"color": "black", "lw": 1.2},
        flierprops={"marker": ".", "markersize": 3, "markeredgecolor": "none", "markerfacecolor": "0.4"},
    )
    for patch, c in zip(bp["boxes"], present, strict=True):
        patch.set_facecolor(colors[c])
        patch.set_alpha(0.85)
    ax_box.set_xticks(np.arange(1, len(present) + 1))
    ax_box.set_xticklabels(present, rotation=90 if max((len(c) for c in present), default=0) > 3 else 0)
    ax_box.set_xlabel("cluster")
    ax_box.set_ylabel(label)
    if measure == "max_probability":
        ax_box.axhline(1.0 / k, color="grey", ls="--", lw=1)
        ax_box.text(0.5, 1.0 / k, f" chance (1/{k})", va="bottom", ha="left", fontsize=8, color="grey")
        ax_box.set_ylim(min(1.0 / k, float(conf.min(initial=1.0))) - 0.05, 1.03)
    else:
        ax_box.set_ylim(-0.03, 1.03)
    ax_box.set_title(f"{label} per cluster")
    ax_box.spines[["top", "right"]].set_visible(False)


def _embedding_panel(fig, ax_emb, xy, conf, measure: str, label: str, k: int, emb_name: str):
    """The cells on the embedding, coloured by the confidence, least confident on top."""
    # least confident cells on top, so that they are visible
    order = np.argsort(conf) if measure == "entropy" else np.argsort(-conf)
    cmap, vmin, vmax = ("viridis", 1.0 / k, 1.0) if measure == "max_probability" else ("viridis_r", 0.0, 1.0)
    sca = ax_emb.scatter(
        xy[order, 0],
        xy[order, 1],
        c=conf[order],
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        s=float(np.clip(12000 / max(len(conf), 1), 1.0, 40.0)),
        linewidths=0,
        rasterized=len(conf) > 5000,
    )
    cbar = fig.colorbar(sca, ax=ax_emb, fraction=0.046, pad=0.02)
    cbar.set_label(label)
    ax_emb.set_xticks([])
    ax_emb.set_yticks([])
    if emb_name.startswith("spatial"):
        # tissue coordinates as squidpy (and scsiam.pl.spatial) draw them: image rows grow downwards
        ax_emb.set_aspect("equal", adjustable="datalim")  # the colour bar stays next to the axes
        ax_emb.invert_yaxis()
    ax_emb.set_xlabel(f"{emb_name} 1")
    ax_emb.set_ylabel(f"{emb_name} 2")
    ax_emb.set_title(f"{label} on {emb_name}")


def _confidence_embedding(adata, key_added: str, basis: str | None) -> tuple[np.ndarray, str]:
    """Coordinates and axis name of the embedding drawn by :func:`cluster_confidence`."""
    if basis is not None:
        key = basis if basis in adata.obsm else f"X_{basis}"
        if key not in adata.obsm:
            raise KeyError(f"obsm[{basis!r}] is missing; available: {sorted(adata.obsm.keys())}.")
        name = key.removeprefix("X_")
        name = "UMAP" if name.endswith("umap") else ("t-SNE" if name.endswith("tsne") else name)
        return _obsm_2d(adata, key), name
    rep = f"X_{key_added}"
    if rep not in adata.obsm and f"{rep}_umap" not in adata.obsm:
        raise KeyError(
            f"obsm[{rep!r}] is missing, so no embedding can be drawn; run "
            f"scsiam.tl.siamese_clu(adata, key_added={key_added!r}) first, pass basis=..., or pass ax=... "
            "to draw only the per-cluster panel."
        )
    return _umap(adata, key_added)[0], "UMAP"
