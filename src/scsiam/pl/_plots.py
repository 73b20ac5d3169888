"""Plotting functions."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator


def _finish(fig, show: bool | None, return_fig: bool):
    if return_fig:
        return fig
    if show is None or show:
        plt.show()
    return None


def embedding(
    adata,
    *,
    color: str | list[str] | None = None,
    key_added: str = "siamese",
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
):
    """UMAP of the scsiam embedding ``obsm[f"X_{key_added}"]``, coloured by clusters by default.

    The UMAP is computed on a private copy when ``obsm[f"X_{key_added}_umap"]`` is missing,
    so ``adata`` is not modified.

    Parameters
    ----------
    adata
        AnnData (or MuData) with results of :func:`scsiam.tl.siamese_clu`.
    color
        Keys of ``obs`` or genes to colour by (default: the clusters).
    key_added
        Prefix used by :func:`scsiam.tl.siamese_clu`.
    ax
        Matplotlib axes to draw into.
    show
        Show the figure.
    return_fig
        Return the figure.
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.
    """
    import scanpy as sc

    rep = f"X_{key_added}"
    if rep not in adata.obsm:
        raise KeyError(
            f"obsm[{rep!r}] is missing; run scsiam.tl.siamese_clu(adata, key_added={key_added!r}) first."
        )
    color = color or f"{key_added}_clusters"
    colors = [color] if isinstance(color, str) else list(color)
    basis = f"{rep}_umap"
    obsm = {rep: np.asarray(adata.obsm[rep])}
    if basis in adata.obsm:
        obsm[basis] = np.asarray(adata.obsm[basis])
    # drawn from a private AnnData: genes can colour it, and nothing is written back to adata
    view = _private_view(adata, adata.obs.copy(), obsm, colors)
    if basis not in view.obsm:
        sc.pp.neighbors(view, use_rep=rep)
        sc.tl.umap(view)
        view.obsm[basis] = view.obsm.pop("X_umap")
    if len(colors) > 1:
        # one panel per colour, laid out by scanpy
        if ax is not None:
            raise ValueError("Several colours draw several panels; leave ax=None or pass one colour.")
        fig = sc.pl.embedding(view, basis=basis, color=colors, show=False, return_fig=True, **kwargs)
        panels = [a for a in fig.axes if a.get_title()]
    else:
        if ax is None:
            fig, ax = plt.subplots(figsize=(5, 4.5))
        else:
            fig = ax.figure
        sc.pl.embedding(view, basis=basis, color=colors[0], ax=ax, show=False, **kwargs)
        panels = [ax]
    for panel in panels:
        panel.set_xlabel("UMAP 1")
        panel.set_ylabel("UMAP 2")
    return _finish(fig, show, return_fig)


def training_history(
    model_or_history,
    *,
    keys: list[str] | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Every loss term over the epochs, with the pretraining/clustering phases marked.

    Parameters
    ----------
    model_or_history
        A trained :class:`~scsiam.SiameseCluModel` or its ``history`` dict.
    keys
        History keys to plot (default: all loss terms).
    ax, show, return_fig
        As in scanpy.
    """
    history = getattr(model_or_history, "history", model_or_history)
    if not isinstance(history, dict) or not history:
        raise ValueError("No training history found; train the model first.")
    keys = keys or [k for k in history if k.startswith("loss_") or k == "train_loss"]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    for k in keys:
        vals = np.asarray(history[k]).ravel().astype(float)
        # epochs as recorded (keys logged only while clustering start later), counted from 1
        index = getattr(history[k], "index", None)
        epochs = np.asarray(index, dtype=float) + 1 if index is not None else np.arange(1, len(vals) + 1)
        ax.plot(epochs, vals, label=k.removesuffix("_train"))
    if "cluster_weight" in history:
        w = np.asarray(history["cluster_weight"]).ravel().astype(float)
        start = int(np.argmax(w > 0)) + 1 if (w > 0).any() else None
        if start is not None:
            ax.axvline(start - 0.5, color="grey", ls="--", lw=1)
            ax.text(
                start - 0.5, ax.get_ylim()[1], " clustering", va="top", ha="left", fontsize=8, color="grey"
            )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.set_yscale("symlog", linthresh=1e-2)
    if all(np.nanmin(np.asarray(history[k], dtype=float)) >= 0 for k in keys):
        ax.set_ylim(bottom=0)  # no empty negative half of the symlog axis
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("scsiam training history")
    return _finish(fig, show, return_fig)


# ----------------------------------------------------------------------------- helpers
def _private_view(adata, obs, obsm: dict, colors: list[str]):
    """A private AnnData to draw from: it shares the expression matrices (genes can colour the
    plot) and holds copies of ``obs``, the given ``obsm`` and the stored colours, so scanpy's
    writes (e.g. ``uns['<key>_colors']``) never reach ``adata``."""
    import anndata as ad
    import pandas as pd

    if isinstance(adata, ad.AnnData):
        view = ad.AnnData(
            X=adata.X,
            obs=obs,
            var=adata.var.copy(),
            obsm=obsm,
            layers=dict(adata.layers.items()),
            raw={"X": adata.raw.X, "var": adata.raw.var.copy()} if adata.raw is not None else None,
        )
    else:
        view = ad.AnnData(obs=obs, obsm=obsm)
    for c in colors:  # stored colours, when there are enough of them (else the default palette, as in scanpy)
        stored = adata.uns.get(f"{c}_colors")
        if stored is not None and c in obs and isinstance(obs[c].dtype, pd.CategoricalDtype):
            if len(stored) >= len(obs[c].cat.categories):
                view.uns[f"{c}_colors"] = np.asarray(stored).copy()
    return view


def _cluster_categories(clusters) -> list[str]:
    """Cluster names in natural order (the categorical's order when it has one)."""
    import pandas as pd
    from natsort import natsorted

    if isinstance(clusters.dtype, pd.CategoricalDtype):
        return [str(c) for c in clusters.cat.categories]
    return natsorted({str(c) for c in clusters})


def _cluster_colors(adata, key: str, categories: list[str]) -> dict[str, str]:
    """Colour of each cluster: ``uns[f"{key}_colors"]`` when it fits, else scanpy's default palette."""
    from matplotlib import rcParams
    from matplotlib.colors import to_hex
    from scanpy.plotting import palettes

    stored = adata.uns.get(f"{key}_colors") if hasattr(adata, "uns") else None
    if stored is not None and len(stored) >= len(categories):
        colors = [to_hex(c) for c in list(stored)[: len(categories)]]
    else:  # the choice scanpy makes for a categorical without stored colours
        n = len(categories)
        cycle = rcParams["axes.prop_cycle"].by_key().get("color", [])
        if len(cycle) >= n:
            colors = list(cycle[:n])
        elif n <= 20:
            colors = list(palettes.default_20[:n])
        elif n <= 28:
            colors = list(palettes.default_28[:n])
        elif n <= len(palettes.default_102):
            colors = list(palettes.default_102[:n])
        else:
            colors = ["grey"] * n
    return dict(zip(categories, colors, strict=True))


def _obsm_2d(adata, key: str) -> np.ndarray:
    """The first two columns of ``obsm[key]`` as a dense float array."""
    x = adata.obsm[key]
    x = x.to_numpy() if hasattr(x, "to_numpy") else np.asarray(x)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"obsm[{key!r}] must have at least two columns, got shape {x.shape}.")
    return np.asarray(x[:, :2], dtype=float)


# ----------------------------------------------------------------------------- spatial
def spatial(
    adata,
    *,
    color: str | list[str] | None = None,
    key_added: str = "siamese",
    spatial_key: str = "spatial",
    library_id: str | list[str] | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
    **kwargs,
):
    """Clusters (or other annotations) drawn on the tissue coordinates ``obsm[spatial_key]``.

    Each cell is a point at its spatial position, drawn by :func:`squidpy.pl.spatial_scatter`
    with ``shape=None`` (no tissue image is needed), with equal axis scales and a legend of the
    cluster names. The plot is drawn from a private AnnData that shares the data of ``adata``,
    so ``adata`` is not modified (squidpy would otherwise store colours in ``uns``).

    Needs squidpy: ``pip install 'scsiam[spatial]'``.

    Parameters
    ----------
    adata
        AnnData (or MuData) with spatial coordinates in ``obsm[spatial_key]`` and results of
        :func:`scsiam.tl.siamese_clu`.
    color
        Keys of ``obs`` or genes to colour by (default: the clusters
        ``obs[f"{key_added}_clusters"]``). Several keys give one panel each.
    key_added
        Prefix used by :func:`scsiam.tl.siamese_clu`.
    spatial_key
        Key of the coordinates in ``obsm``.
    library_id
        Slice(s) to draw, values of ``obs[library_key]``; only used together with
        ``library_key=...`` (passed on through ``kwargs``).
    ax
        Matplotlib axes to draw into (one per colour key).
    show
        Show the figure.
    return_fig
        Return the figure.
    **kwargs
        Passed to :func:`squidpy.pl.spatial_scatter` (for example ``size``, ``palette``,
        ``library_key``, ``legend_loc``, ``title``).

    Returns
    -------
    The figure when ``return_fig`` is true, else ``None``.
    """
    try:
        import squidpy as sq
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "scsiam.pl.spatial needs squidpy. Install it with `pip install 'scsiam[spatial]'`."
        ) from e
    import anndata as ad
    import pandas as pd

    if spatial_key not in adata.obsm:
        raise KeyError(
            f"obsm[{spatial_key!r}] is missing: no spatial coordinates. Pass the obsm key that holds "
            f"them with spatial_key=... (available: {sorted(adata.obsm.keys())})."
        )
    clusters_key = f"{key_added}_clusters"
    colors = [clusters_key] if color is None else ([color] if isinstance(color, str) else list(color))
    is_anndata = isinstance(adata, ad.AnnData)
    genes = set(adata.var_names) if is_anndata else set()
    if kwargs.get("use_raw") and is_anndata and adata.raw is not None:
        genes = set(adata.raw.var_names)
    for c in colors:
        if c in adata.obs.columns or c in genes:
            continue
        if c == clusters_key:
            raise KeyError(
                f"obs[{c!r}] is missing; run scsiam.tl.siamese_clu(adata, key_added={key_added!r}) first, "
                "or pass the obs column to draw with color=..."
            )
        raise KeyError(
            f"{c!r} is neither a column of obs nor a gene in var_names; pass an existing key as color."
        )

    # private AnnData sharing the matrices; annotation tables are copied so nothing is written back
    obs = adata.obs.copy()
    for c in colors:  # string and boolean columns are drawn as categories (as scanpy does)
        if c in obs and (
            obs[c].dtype == object or obs[c].dtype == bool or pd.api.types.is_string_dtype(obs[c])
        ):
            if not isinstance(obs[c].dtype, pd.CategoricalDtype):
                obs[c] = pd.Categorical(obs[c].astype(str), categories=_cluster_categories(obs[c]))
    coords = adata.obsm[spatial_key]
    coords = np.asarray(coords.to_numpy() if hasattr(coords, "to_numpy") else coords, dtype=float)
    view = _private_view(adata, obs, {spatial_key: coords}, colors)

    library_key = kwargs.get("library_key")
    if library_key is not None:
        if library_key not in adata.obs.columns:
            raise KeyError(f"obs[{library_key!r}] (library_key) is missing.")
        libraries = (
            [library_id]
            if isinstance(library_id, str)
            else list(library_id)
            if library_id is not None
            else _cluster_categories(obs[library_key])
        )
        if not isinstance(obs[library_key].dtype, pd.CategoricalDtype):
            view.obs[library_key] = pd.Categorical(
                obs[library_key].astype(str), categories=_cluster_categories(obs[library_key])
            )
    else:
        libraries = [None]
    n_panels = len(colors) * len(libraries)
    if ax is None:
        # panels shaped like the tissue, so that the equal aspect ratio leaves no empty band
        ratios = []
        for lib in libraries:
            xy = (
                coords[:, :2]
                if lib is None
                else coords[view.obs[library_key].astype(str).to_numpy() == str(lib), :2]
            )
            span = np.ptp(xy, axis=0) if len(xy) else np.zeros(2)
            if span[0] > 0 and span[1] > 0:
                ratios.append(span[1] / span[0])
        ratio = float(np.clip(np.median(ratios), 0.2, 5.0)) if ratios else 1.0
        ncols = min(n_panels, 4)
        nrows = -(-n_panels // ncols)
        width = 4.2 if ratio <= 1 else 4.2 / ratio
        figsize = (ncols * (width + 1.6), nrows * (width * ratio + 0.9))
        fig, axs = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
        axs = list(axs.ravel())
        for extra in axs[n_panels:]:
            extra.remove()
        axs = axs[:n_panels]
    else:
        axs = [ax] if not isinstance(ax, list | tuple | np.ndarray) else list(np.ravel(ax))
        if len(axs) != n_panels:
            raise ValueError(
                f"Got {len(axs)} axes for {n_panels} panels; pass one axes per colour key and slice."
            )
        fig = axs[0].figure
    kwargs.setdefault("size", float(np.clip(20000 / max(adata.n_obs, 1), 2.0, 50.0)))
    if "title" not in kwargs and color is None:
        kwargs["title"] = (
            "scsiam clusters" if libraries == [None] else [f"scsiam clusters ({lib})" for lib in libraries]
        )
    if library_id is None and kwargs.get("library_key") is None:
        library_id = ""  # squidpy's placeholder for data without libraries (avoids its warning)
    if len(axs) > 1:
        kwargs.setdefault("fig", fig)
    with warnings.catch_warnings():  # noise from squidpy's scatter of categorical colours
        warnings.filterwarnings("ignore", message="No data for colormapping provided", category=UserWarning)
        warnings.filterwarnings("ignore", message="The set_bad function", category=PendingDeprecationWarning)
        sq.pl.spatial_scatter(
            view,
            color=colors if len(colors) > 1 else colors[0],
            shape=None,
            spatial_key=spatial_key,
            library_id=library_id,
            ax=axs if len(axs) > 1 else axs[0],
            **kwargs,
        )
    for a in axs:
        a.set_aspect("equal", adjustable="box")
    return _finish(fig, show, return_fig)


# ----------------------------------------------------------------------------- confidence
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
    The figure when ``return_fig`` is true, else ``None``.
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
    k = probs.shape[1]
    if measure == "max_probability":
        ax_box.axhline(1.0 / k, color="grey", ls="--", lw=1)
        ax_box.text(0.5, 1.0 / k, f" chance (1/{k})", va="bottom", ha="left", fontsize=8, color="grey")
        ax_box.set_ylim(min(1.0 / k, float(conf.min(initial=1.0))) - 0.05, 1.03)
    else:
        ax_box.set_ylim(-0.03, 1.03)
    ax_box.set_title(f"{label} per cluster")
    ax_box.spines[["top", "right"]].set_visible(False)

    if xy is not None:
        # least confident cells on top, so that they are visible
        order = np.argsort(conf) if measure == "entropy" else np.argsort(-conf)
        cmap, vmin, vmax = (
            ("viridis", 1.0 / k, 1.0) if measure == "max_probability" else ("viridis_r", 0.0, 1.0)
        )
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
        ax_emb.set_xlabel(f"{emb_name} 1")
        ax_emb.set_ylabel(f"{emb_name} 2")
        ax_emb.set_title(f"{label} on {emb_name}")
        fig.tight_layout()
    return _finish(fig, show, return_fig)


def _confidence_embedding(adata, key_added: str, basis: str | None) -> tuple[np.ndarray, str]:
    """Coordinates and axis name of the embedding drawn by :func:`cluster_confidence`."""
    if basis is not None:
        key = basis if basis in adata.obsm else f"X_{basis}"
        if key not in adata.obsm:
            raise KeyError(f"obsm[{basis!r}] is missing; available: {sorted(adata.obsm.keys())}.")
        name = key.removeprefix("X_")
        name = "UMAP" if name.endswith("umap") else ("t-SNE" if name.endswith("tsne") else name)
        return _obsm_2d(adata, key), name
    umap_key = f"X_{key_added}_umap"
    if umap_key in adata.obsm:
        return _obsm_2d(adata, umap_key), "UMAP"
    rep = f"X_{key_added}"
    if rep not in adata.obsm:
        raise KeyError(
            f"obsm[{rep!r}] is missing, so no embedding can be drawn; run "
            f"scsiam.tl.siamese_clu(adata, key_added={key_added!r}) first, pass basis=..., or pass ax=... "
            "to draw only the per-cluster panel."
        )
    import anndata as ad
    import scanpy as sc

    z = adata.obsm[rep]
    view = ad.AnnData(obs=adata.obs[[]].copy(), obsm={rep: np.asarray(z, dtype=np.float32)})
    sc.pp.neighbors(view, use_rep=rep, n_neighbors=min(15, max(2, adata.n_obs - 1)))
    sc.tl.umap(view)
    return _obsm_2d(view, "X_umap"), "UMAP"
