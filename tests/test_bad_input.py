"""Bad input: a clear error (type and message) and the user's object left exactly as it was."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import assert_unchanged, snapshot, subsample

import scsiam
from scsiam import SiameseCluModel


@pytest.fixture
def small(worm_full):
    """40 cells with a scanpy-style neighbours entry, a layer and coordinates, to catch any write."""
    adata = subsample(worm_full, 40, seed=21)
    adata.layers["counts"] = adata.X.copy()
    adata.obsm["spatial"] = np.random.default_rng(0).uniform(size=(40, 2))
    adata.obsp["connectivities"] = sp.csr_matrix((40, 40), dtype=np.float32)
    adata.uns["neighbors"] = {"connectivities_key": "connectivities"}
    return adata


def _with_value(adata, value):
    """A copy of ``adata`` with one stored value of X replaced."""
    adata = adata.copy()
    adata.X.data[3] = value
    return adata


def _case(name, small):
    """(adata, kwargs, exception type, message regex) for each bad-input case."""
    n = small.n_obs
    if name in ("nan", "inf"):
        return (
            _with_value(small, np.nan if name == "nan" else np.inf),
            {"n_clusters": 3},
            ValueError,
            r"NaN or infinite",
        )
    if name == "empty":
        return small[:0].copy(), {"n_clusters": 3}, ValueError, r"0 cell\(s\).*at least"
    if name == "one-cell":
        return small[:1].copy(), {"n_clusters": 3}, ValueError, r"1 cell\(s\).*at least"
    return {
        "k>=n": (small, {"n_clusters": n}, ValueError, r"must be smaller than the number of cells"),
        "k>n": (small, {"n_clusters": n + 5}, ValueError, r"must be smaller than the number of cells"),
        "k=1": (small, {"n_clusters": 1}, ValueError, r"at least 2"),
        "k-str": (small, {"n_clusters": "five"}, TypeError, r"n_clusters must be an integer"),
        "k-float": (small, {"n_clusters": 2.5}, TypeError, r"n_clusters must be an integer"),
        "k-bool": (small, {"n_clusters": True}, TypeError, r"n_clusters must be an integer"),
        "missing-layer": (
            small,
            {"n_clusters": 3, "layer": "raw_counts"},
            KeyError,
            r"Layer 'raw_counts' is not in adata.layers",
        ),
        "missing-obsp": (small, {"n_clusters": 3, "obsp": "nope"}, KeyError, r"obsp='nope' is not in obsp"),
        "missing-neighbors-key": (
            small,
            {"n_clusters": 3, "neighbors_key": "nope"},
            KeyError,
            r"neighbors_key='nope' is not in uns",
        ),
        "missing-spatial-key": (
            small,
            {"n_clusters": 3, "spatial_key": "nope"},
            KeyError,
            r"spatial_key='nope' is not in obsm",
        ),
        "obsp-and-neighbors-key": (
            small,
            {"n_clusters": 3, "obsp": "connectivities", "neighbors_key": "neighbors"},
            ValueError,
            r"either obsp or neighbors_key, not both",
        ),
        "missing-batch-key": (
            small,
            {"n_clusters": 3, "batch_key": "sample"},
            KeyError,
            r"batch_key 'sample' is not a column",
        ),
        "empty-key-added": (
            small,
            {"n_clusters": 3, "key_added": ""},
            TypeError,
            r"key_added must be a non-empty string",
        ),
        "smoothing-without-coordinates": (
            small,
            {"n_clusters": 3, "spatial_smoothing": 2},
            ValueError,
            r"spatial_smoothing needs spatial coordinates",
        ),
        "smoothing-negative": (
            small,
            {"n_clusters": 3, "spatial_key": "spatial", "spatial_smoothing": -1},
            ValueError,
            r"spatial_smoothing must be a non-negative integer",
        ),
        "smoothing-float": (
            small,
            {"n_clusters": 3, "spatial_key": "spatial", "spatial_smoothing": 1.5},
            TypeError,
            r"spatial_smoothing must be an integer",
        ),
        "n-top-genes-0": (
            small,
            {"n_clusters": 3, "n_top_genes": 0},
            ValueError,
            r"n_top_genes must be a positive",
        ),
        "n-top-genes-negative": (
            small,
            {"n_clusters": 3, "n_top_genes": -5},
            ValueError,
            r"n_top_genes must be a positive",
        ),
    }[name]


CASES = [
    "nan",
    "inf",
    "empty",
    "one-cell",
    "k>=n",
    "k>n",
    "k=1",
    "k-str",
    "k-float",
    "k-bool",
    "missing-layer",
    "missing-obsp",
    "missing-neighbors-key",
    "missing-spatial-key",
    "obsp-and-neighbors-key",
    "missing-batch-key",
    "empty-key-added",
    "smoothing-without-coordinates",
    "smoothing-negative",
    "smoothing-float",
    "n-top-genes-0",
    "n-top-genes-negative",
]


@pytest.mark.parametrize("case", CASES)
def test_tl_bad_input_raises_and_leaves_adata_unchanged(small, case):
    adata, kwargs, exc, pattern = _case(case, small)
    snap = snapshot(adata)
    with pytest.raises(exc, match=pattern) as info:
        scsiam.tl.siamese_clu(adata, progress_bar=False, **kwargs)
    assert len(str(info.value)) > 15
    assert_unchanged(adata, snap)


def test_tl_neighbors_key_pointing_to_missing_graph(small):
    small.uns["broken"] = {"connectivities_key": "gone"}
    snap = snapshot(small)
    with pytest.raises(KeyError, match=r"points to obsp\['gone'\], which is missing") as info:
        scsiam.tl.siamese_clu(small, n_clusters=3, neighbors_key="broken")
    assert len(str(info.value)) > 15
    assert_unchanged(small, snap)


def test_tl_bad_spatial_coordinates(small):
    small.obsm["spatial"][0, 0] = np.nan
    snap = snapshot(small)
    with pytest.raises(ValueError, match=r"must be finite \(n_obs, 2\+\) coordinates"):
        scsiam.tl.siamese_clu(small, n_clusters=3, spatial_key="spatial")
    assert_unchanged(small, snap)


@pytest.mark.parametrize("obj", [np.ones((20, 5)), [[1, 2], [3, 4]], "adata.h5ad", None])
def test_tl_non_anndata_raises_type_error(obj):
    before = obj.copy() if isinstance(obj, np.ndarray) else obj
    with pytest.raises(TypeError, match=r"Expected an AnnData or MuData, got \w+") as info:
        scsiam.tl.siamese_clu(obj, n_clusters=3)
    assert len(str(info.value)) > 15
    if isinstance(obj, np.ndarray):
        np.testing.assert_array_equal(obj, before)


# ------------------------------------------------------------------------------- model path
def test_setup_anndata_nan_raises_and_leaves_adata_unchanged(small):
    adata = _with_value(small, np.nan)
    snap = snapshot(adata)
    with pytest.raises(ValueError, match=r"contains 1 NaN or infinite value") as info:
        SiameseCluModel.setup_anndata(adata)
    assert len(str(info.value)) > 15
    assert_unchanged(adata, snap)


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"layer": "nope"}, KeyError, r"Layer 'nope' is not in adata.layers"),
        ({"graph_key": "nope"}, KeyError, r"Graph 'nope' is not in adata.obsp"),
        ({"spatial_key": "nope"}, KeyError, r"Spatial coordinates 'nope' are not in adata.obsm"),
        ({"batch_key": "nope"}, KeyError, r"batch_key 'nope' is not a column"),
    ],
)
def test_setup_anndata_bad_keys(small, kwargs, exc, pattern):
    snap = snapshot(small)
    with pytest.raises(exc, match=pattern):
        SiameseCluModel.setup_anndata(small, **kwargs)
    assert_unchanged(small, snap)


def test_setup_anndata_too_few_cells_and_wrong_type(small):
    tiny = small[:3].copy()
    snap = snapshot(tiny)
    with pytest.raises(ValueError, match=r"3 cell\(s\); scsiam needs at least"):
        SiameseCluModel.setup_anndata(tiny)
    assert_unchanged(tiny, snap)
    with pytest.raises(TypeError, match=r"Expected an AnnData, got ndarray"):
        SiameseCluModel.setup_anndata(np.ones((20, 4)))


def test_setup_anndata_dense_graph_is_refused(small):
    small.obsp["dense"] = np.eye(small.n_obs, dtype=np.float32)
    snap = snapshot(small)
    with pytest.raises(TypeError, match=r"is dense; a sparse graph is required"):
        SiameseCluModel.setup_anndata(small, graph_key="dense")
    assert_unchanged(small, snap)  # scvi-tools' batch field, written before the graph check, is removed


def test_setup_anndata_missing_batch_values(small):
    small.obs["b"] = ["b1", None] * (small.n_obs // 2)
    snap = snapshot(small)
    with pytest.raises(ValueError, match=r"obs\['b'\] \(batch_key\) is missing for 20 cells"):
        SiameseCluModel.setup_anndata(small, batch_key="b")
    assert_unchanged(small, snap)


def test_setup_anndata_failing_late_leaves_adata_as_it_was(small, monkeypatch):
    """A failure after the graph is written (in scvi-tools' registration) takes the graph back out."""
    from scvi.data import AnnDataManager

    SiameseCluModel.setup_anndata(small, n_neighbors=5, n_pcs=10)
    graph = small.obsp["siamese_connectivities"]
    snap = snapshot(small)

    def fail(self, adata, **kwargs):
        adata.obs["_scvi_batch"] = 7
        raise RuntimeError("registration failed")

    monkeypatch.setattr(AnnDataManager, "register_fields", fail)
    with pytest.raises(RuntimeError, match="registration failed"):
        SiameseCluModel.setup_anndata(small, n_neighbors=3, n_pcs=10)
    assert_unchanged(small, snap)
    assert small.obsp["siamese_connectivities"] is graph  # the earlier graph is back
    assert (small.obs["_scvi_batch"] == 0).all()


def test_setup_anndata_refuses_a_view_and_its_own_output_key_as_input(small):
    view = small[:30]
    with pytest.raises(ValueError, match=r"adata is a view; call `adata = adata.copy\(\)`"):
        SiameseCluModel.setup_anndata(view)
    assert view.is_view
    small.obsp["siamese_connectivities"] = small.obsp["connectivities"].copy()
    snap = snapshot(small)
    with pytest.raises(ValueError, match=r"Store it under another key first"):
        SiameseCluModel.setup_anndata(small, graph_key="siamese_connectivities", spatial_key="spatial")
    assert_unchanged(small, snap)


def test_model_bad_n_clusters_and_likelihood(small):
    SiameseCluModel.setup_anndata(small, n_neighbors=5, n_pcs=10)
    with pytest.raises(TypeError, match=r"n_clusters must be an integer"):
        SiameseCluModel(small, n_clusters="five")
    with pytest.raises(ValueError, match=r"must be smaller than the number of cells"):
        SiameseCluModel(small, n_clusters=small.n_obs)
    small.X = small.X * 0.5  # no longer counts
    SiameseCluModel.setup_anndata(small, n_neighbors=5, n_pcs=10)
    with pytest.raises(ValueError, match=r"likelihood='nb' needs raw counts"):
        SiameseCluModel(small, n_clusters=3, likelihood="nb")


@pytest.mark.parametrize("fn", ["spatial_graph", "combined_graph"])
def test_pp_graphs_refuse_missing_coordinates(small, fn):
    small.obsm["spatial"][[2, 5], 0] = np.nan
    snap = snapshot(small)
    with pytest.raises(ValueError, match=r"coordinates of 2 cell\(s\) are NaN or infinite"):
        getattr(scsiam.pp, fn)(small, spatial_key="spatial")
    assert_unchanged(small, snap)


def test_pp_graphs_check_and_record_neighbour_counts(small):
    snap = snapshot(small)
    with pytest.raises(ValueError, match=r"n_neighs must be an integer of at least 1, got 0"):
        scsiam.pp.spatial_graph(small, n_neighs=0)
    with pytest.raises(ValueError, match=r"n_neighbors must be an integer of at least 2, got 1"):
        scsiam.pp.combined_graph(small, n_neighbors=1)
    assert_unchanged(small, snap)
    scsiam.pp.spatial_graph(small, n_neighs=500)
    assert small.uns["spatial_neighbors"]["params"]["n_neighbors"] == small.n_obs - 1
    assert (small.obsp["spatial_connectivities"].getnnz(1) >= small.n_obs - 1).all()
