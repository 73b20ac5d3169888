"""Input resolution shared by the set-up methods and ``tl.siamese_clu``: containers, modalities, protein
values, the given graph, coordinates, the private working copy and its highly variable genes."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._constants import DEFAULT_GRAPH_KEY, INPUT_GRAPH_KEY
from .._utils import check_batch_complete, check_finite, check_not_view, is_count_matrix, keep_torch_threads

logger = logging.getLogger(__name__)

#: modality names that ``protein_mod="auto"`` recognises as proteins
PROTEIN_MODALITY_NAMES = ("prot", "protein", "adt")


def is_mudata(data) -> bool:
    try:
        from mudata import MuData
    except ImportError:  # pragma: no cover
        return False
    return isinstance(data, MuData)


def check_same_cells(mdata, rna_mod: str, protein_mod: str | None = None) -> None:
    """Refuse modalities that do not hold the MuData's cells in the MuData's order.

    Results and registered values are read row by row, so a modality with other cells or
    another order would pair values with the wrong cells.
    """
    rna = mdata.mod[rna_mod]
    if rna.n_obs != mdata.n_obs or not (rna.obs_names == mdata.obs_names).all():
        raise ValueError(
            f"The {rna_mod!r} modality does not hold the MuData's cells in the MuData's order ({rna.n_obs} "
            f"cells there, {mdata.n_obs} in the MuData), so values could not be paired with the right "
            f"cells. Restrict and order the MuData to that modality's cells first: "
            f"`mdata = mdata[mdata.mod[{rna_mod!r}].obs_names].copy()`."
        )
    if protein_mod is None:
        return
    prot = mdata.mod[protein_mod]
    if prot.n_obs != rna.n_obs or not (prot.obs_names == rna.obs_names).all():
        raise ValueError(
            f"The {protein_mod!r} modality does not hold the same cells in the same order as the RNA modality; "
            "intersect the modalities first (muon.pp.intersect_obs)."
        )


def resolve_container(adata, rna_mod: str | None = None):
    """(object that receives the results, AnnData whose expression is clustered)."""
    check_not_view(adata)
    if isinstance(adata, AnnData):
        return adata, adata
    if not is_mudata(adata):
        raise TypeError(f"Expected an AnnData or MuData, got {type(adata).__name__}.")
    if not adata.mod:
        raise ValueError("The MuData has no modalities.")
    if rna_mod is not None and rna_mod not in adata.mod:
        raise KeyError(f"rna_mod={rna_mod!r} is not a modality of the MuData ({list(adata.mod)}).")
    name = rna_mod or ("rna" if "rna" in adata.mod else next(iter(adata.mod)))
    check_same_cells(adata, name)
    return adata, adata.mod[name]


def protein_values(target, data, protein_obsm_key, protein_mod):
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
        protein_mod = _protein_modality(target, protein_mod)
        if protein_mod is None:
            return None
        check_same_cells(target, next(m for m, a in target.mod.items() if a is data), protein_mod)
        values, where = target.mod[protein_mod].X, f"mdata.mod[{protein_mod!r}].X"
    values = values.toarray() if sp.issparse(values) else np.array(values, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[0] != data.n_obs:
        raise ValueError(
            f"{where} must be a cells × proteins matrix with {data.n_obs} rows, got shape {values.shape}."
        )
    check_finite(values, where)
    return values


def _protein_modality(mdata, protein_mod):
    if protein_mod == "auto":
        protein_mod = next((m for m in mdata.mod if m.lower() in PROTEIN_MODALITY_NAMES), None)
        if protein_mod is not None:
            logger.info(
                "Clustering RNA together with the %r modality (protein_mod=None for RNA alone).", protein_mod
            )
    if protein_mod is not None and protein_mod not in mdata.mod:
        raise KeyError(f"protein_mod={protein_mod!r} is not a modality of the MuData ({list(mdata.mod)}).")
    return protein_mod


def choose_graph(target, data, *, neighbors_key, obsp):
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


def spatial_coords(target, data, spatial_key):
    """The first two columns of ``obsm[spatial_key]`` as float64, checked finite; ``None`` without a key."""
    if spatial_key is None:
        return None
    for holder in (target, data):
        if spatial_key in holder.obsm:
            return check_coordinates(holder.obsm[spatial_key], f"obsm[{spatial_key!r}]")
    raise KeyError(
        f"spatial_key={spatial_key!r} is not in obsm (keys: {list(target.obsm.keys())}). "
        "Pass the obsm key holding the coordinates (usually 'spatial')."
    )


def check_coordinates(values, where: str) -> np.ndarray:
    """The first two columns of spatial coordinates as float64: numeric, finite, (n_obs, 2+); warns when all equal."""
    if hasattr(values, "columns"):
        check_finite(values, where)  # names a table's text columns
    try:
        coords = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{where} must hold numeric coordinates; it has non-numeric entries ({e}).") from e
    if coords.ndim != 2 or coords.shape[1] < 2 or not np.isfinite(coords).all():
        raise ValueError(f"{where} must be finite (n_obs, 2+) coordinates.")
    coords = coords[:, :2]
    if coords.shape[0] > 1 and (coords == coords[0]).all():
        warnings.warn(
            f"Every cell has the same coordinates in {where}: the spatial graph joins cells at random. Check the key.",
            UserWarning,
            stacklevel=3,
        )
    return coords


def batch_values(target, data, batch_key):
    """The batch column (from the clustered AnnData, else the container), checked complete; ``None`` without a key."""
    if batch_key is None:
        return None
    for holder in (data, target):
        if batch_key in holder.obs:
            col = holder.obs[batch_key]
            check_batch_complete(col, batch_key)
            return col
    raise KeyError(f"batch_key {batch_key!r} is not a column of obs.")


def working_copy(
    data, X, *, batch=None, graph=None, graph_name=None, coords=None, protein=None, n_top_genes=None
) -> AnnData:
    """A lean private AnnData: expression, optional batch, graph, coordinates and protein, HVGs selected.

    A given graph keeps its ``obsp`` name (``graph_name``), so that a model fitted on it asks new
    cells for the same key. Its keys are the ones :func:`working_setup_kwargs` registers.
    """
    obs = pd.DataFrame(index=data.obs_names.copy())
    if batch is not None:
        obs["batch"] = pd.Categorical(np.asarray(batch).astype(str))
    X = sp.csr_matrix(X, dtype=np.float32, copy=True) if sp.issparse(X) else np.array(X, dtype=np.float32)
    work = AnnData(X=X, obs=obs, var=pd.DataFrame(index=data.var_names.copy()))
    if graph is not None:
        # the set-up's own key would be taken for a graph it builds itself
        key = INPUT_GRAPH_KEY if graph_name in (None, DEFAULT_GRAPH_KEY) else graph_name
        work.obsp[key] = sp.csr_matrix(graph, dtype=np.float32)
    if coords is not None:
        work.obsm["spatial"] = coords
    if n_top_genes is not None and work.n_vars > n_top_genes:
        work = work[:, hvg_mask(work, n_top_genes)].copy()
    if protein is not None:
        work.obsm["protein"] = protein
    return work


def working_setup_kwargs(work: AnnData) -> dict:
    """The ``setup_anndata`` arguments that register what :func:`working_copy` stored."""
    return {
        "batch_key": "batch" if "batch" in work.obs else None,
        "graph_key": next(iter(work.obsp.keys()), None),
        "spatial_key": "spatial" if "spatial" in work.obsm else None,
        "protein_obsm_key": "protein" if "protein" in work.obsm else None,
    }


@keep_torch_threads
def hvg_mask(work: AnnData, n_top_genes: int) -> np.ndarray:
    """Highly variable genes: scanpy's default (``flavor="seurat"``) on log-normalised values.

    Counts are normalised to the median library size and log-transformed first, as in scanpy's
    standard pipeline (the same gene set the scanpy, PCA and scVI peers of the benchmarks use).
    """
    import scanpy as sc

    tmp = AnnData(X=work.X.copy())
    if is_count_matrix(work.X):
        sc.pp.normalize_total(tmp)
        sc.pp.log1p(tmp)
    if float(np.max(tmp.X.data if sp.issparse(tmp.X) else tmp.X, initial=0.0)) > 50:
        # the "seurat" flavour reads values as log1p and takes expm1, which overflows here
        # (values above e^50: not log-transformed); rank genes by their variance instead
        warnings.warn(
            "The values are not raw counts and look unlogged (above 50); highly variable genes are chosen by "
            "variance. Log-transform them (sc.pp.log1p) or pass raw counts for scanpy's gene selection.",
            UserWarning,
            stacklevel=4,
        )
        var = np.asarray(_column_variance(tmp.X))
        mask = np.zeros(tmp.n_vars, dtype=bool)
        mask[np.argsort(-var, kind="stable")[:n_top_genes]] = True
        return mask
    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat")
    return tmp.var["highly_variable"].to_numpy()


def _column_variance(X) -> np.ndarray:
    if sp.issparse(X):
        mean = np.asarray(X.mean(0)).ravel()
        return np.asarray(X.multiply(X).mean(0)).ravel() - mean**2
    return np.asarray(X, dtype=np.float64).var(0)
