"""Clusters on the tissue coordinates: :func:`scsiam.pl.spatial`."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np

from ._utils import _cluster_categories, _finish, _private_view


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
    The figure when ``return_fig`` is true; with ``show=False`` the Axes (a list with one per
    panel when there are several); else ``None``.
    """
    sq = _import_squidpy()
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"obsm[{spatial_key!r}] is missing: no spatial coordinates. Pass the obsm key that holds "
            f"them with spatial_key=... (available: {sorted(adata.obsm.keys())})."
        )
    clusters_key = f"{key_added}_clusters"
    colors = [clusters_key] if color is None else ([color] if isinstance(color, str) else list(color))
    _check_colors(adata, colors, clusters_key, key_added, kwargs.get("use_raw"))

    # private AnnData sharing the matrices; annotation tables are copied so nothing is written back
    obs = _categorical_obs(adata, colors)
    coords = adata.obsm[spatial_key]
    coords = np.asarray(coords.to_numpy() if hasattr(coords, "to_numpy") else coords, dtype=float)
    view = _private_view(adata, obs, {spatial_key: coords}, colors)

    library_key = kwargs.get("library_key")
    libraries = _libraries(adata, obs, view, library_key, library_id)
    fig, axs = _panel_axes(ax, len(colors) * len(libraries), coords, view, library_key, libraries)
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
    return _finish(fig, show, return_fig, axs)


def _import_squidpy():
    """The squidpy module, or an ImportError that says how to install it."""
    try:
        import squidpy as sq
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "scsiam.pl.spatial needs squidpy. Install it with `pip install 'scsiam[spatial]'`."
        ) from e
    return sq


def _check_colors(adata, colors: list[str], clusters_key: str, key_added: str, use_raw) -> None:
    """Raise a KeyError for a colour key that is neither a column of ``obs`` nor a gene."""
    import anndata as ad

    is_anndata = isinstance(adata, ad.AnnData)
    genes = set(adata.var_names) if is_anndata else set()
    if use_raw and is_anndata and adata.raw is not None:
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


def _categorical_obs(adata, colors: list[str]):
    """A copy of ``obs`` in which the string and boolean colour columns are categorical (as scanpy draws them)."""
    import pandas as pd

    obs = adata.obs.copy()
    for c in colors:
        if c in obs and (
            obs[c].dtype == object or obs[c].dtype == bool or pd.api.types.is_string_dtype(obs[c])
        ):
            if not isinstance(obs[c].dtype, pd.CategoricalDtype):
                obs[c] = pd.Categorical(obs[c].astype(str), categories=_cluster_categories(obs[c]))
    return obs


def _libraries(adata, obs, view, library_key: str | None, library_id) -> list:
    """The slices to draw (``[None]`` without ``library_key``); makes ``view.obs[library_key]`` categorical."""
    import pandas as pd

    if library_key is None:
        return [None]
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
    return libraries


def _panel_axes(ax, n_panels: int, coords: np.ndarray, view, library_key: str | None, libraries: list):
    """The figure and one axes per panel: the given ``ax``, or a new grid of up to four columns."""
    if ax is not None:
        axs = [ax] if not isinstance(ax, list | tuple | np.ndarray) else list(np.ravel(ax))
        if len(axs) != n_panels:
            raise ValueError(
                f"Got {len(axs)} axes for {n_panels} panels; pass one axes per colour key and slice."
            )
        return axs[0].figure, axs
    # panels shaped like the tissue, so that the equal aspect ratio leaves no empty band
    ratio = _tissue_ratio(coords, view, library_key, libraries)
    ncols = min(n_panels, 4)
    nrows = -(-n_panels // ncols)
    width = 4.2 if ratio <= 1 else 4.2 / ratio
    figsize = (ncols * (width + 1.6), nrows * (width * ratio + 0.9))
    fig, axs = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    axs = list(axs.ravel())
    for extra in axs[n_panels:]:
        extra.remove()
    return fig, axs[:n_panels]


def _tissue_ratio(coords: np.ndarray, view, library_key: str | None, libraries: list) -> float:
    """Median height/width ratio of the slices' coordinates, clipped to [0.2, 5] (1 when unknown)."""
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
    return float(np.clip(np.median(ratios), 0.2, 5.0)) if ratios else 1.0
