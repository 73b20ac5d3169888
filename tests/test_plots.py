"""Plotting functions ``scsiam.pl.spatial`` and ``scsiam.pl.cluster_confidence`` on tiny synthetic results."""

import matplotlib

matplotlib.use("agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import assert_unchanged, snapshot
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

import scsiam
from scsiam.pl._confidence import _confidence

N_OBS, K = 60, 4


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def fake_result(seed: int = 0, key: str = "siamese", with_colors: bool = False) -> ad.AnnData:
    """60 cells with coordinates, an embedding, soft assignments and their argmax as clusters."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(N_OBS, K)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    adata = ad.AnnData(X=rng.poisson(2.0, size=(N_OBS, 10)).astype(np.float32))
    adata.obs_names = [f"cell{i}" for i in range(N_OBS)]
    adata.var_names = [f"gene{i}" for i in range(10)]
    adata.obsm["spatial"] = rng.uniform(0, 100, size=(N_OBS, 2))
    adata.obsm[f"X_{key}"] = rng.normal(size=(N_OBS, 8)).astype(np.float32)
    adata.obsm[f"{key}_probabilities"] = probs
    labels = probs.argmax(1).astype(str)
    adata.obs[f"{key}_clusters"] = pd.Categorical(labels, categories=[str(i) for i in range(K)])
    if with_colors:
        adata.uns[f"{key}_clusters_colors"] = np.array(["#ff0000", "#00ff00", "#0000ff", "#000000"])
    return adata


# ----------------------------------------------------------------------------- spatial
def test_spatial_returns_figure_and_leaves_adata_unchanged():
    pytest.importorskip("squidpy")
    adata = fake_result()
    snap = snapshot(adata)
    obs_before = adata.obs.copy()
    fig = scsiam.pl.spatial(adata, return_fig=True)
    assert isinstance(fig, Figure)
    assert_unchanged(adata, snap)
    pd.testing.assert_frame_equal(adata.obs, obs_before)
    ax = fig.axes[0]
    assert ax.get_aspect() == 1.0
    assert ax.get_title() == "scsiam clusters"
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == [str(i) for i in range(K)]


def test_spatial_gene_and_obs_colours_into_given_axes():
    pytest.importorskip("squidpy")
    adata = fake_result()
    adata.obs["batch"] = pd.Categorical(np.repeat(["a", "b"], N_OBS // 2))
    snap = snapshot(adata)
    fig, axs = plt.subplots(1, 2)
    ret = scsiam.pl.spatial(adata, color=["batch", "gene3"], ax=list(axs), show=False)
    assert ret == list(axs)  # the Axes, as scanpy returns them with show=False
    assert_unchanged(adata, snap)
    assert [a.get_title() for a in axs] == ["batch", "gene3"]
    assert fig.axes[0] is axs[0]


def test_spatial_custom_keys():
    pytest.importorskip("squidpy")
    adata = fake_result(key="foo")
    adata.obsm["coords"] = adata.obsm.pop("spatial")
    fig = scsiam.pl.spatial(adata, key_added="foo", spatial_key="coords", return_fig=True)
    assert isinstance(fig, Figure)


def test_spatial_one_panel_per_slice():
    pytest.importorskip("squidpy")
    adata = fake_result()
    adata.obs["slice"] = np.repeat(["s1", "s2"], N_OBS // 2)  # plain strings, not categorical
    snap = snapshot(adata)
    fig = scsiam.pl.spatial(adata, library_key="slice", return_fig=True)
    assert_unchanged(adata, snap)
    assert adata.obs["slice"].dtype == object
    assert [a.get_title() for a in fig.axes if a.get_title()] == [
        "scsiam clusters (s1)",
        "scsiam clusters (s2)",
    ]
    fig = scsiam.pl.spatial(adata, library_key="slice", library_id="s2", return_fig=True)
    assert max(len(c.get_offsets()) for c in fig.axes[0].collections) == N_OBS // 2  # only slice s2


@pytest.mark.parametrize("with_colors", [True, False])
def test_spatial_and_confidence_use_the_same_cluster_colours(with_colors):
    pytest.importorskip("squidpy")
    adata = fake_result(with_colors=with_colors)
    adata.obs["siamese_clusters"] = adata.obs["siamese_clusters"].astype(str)  # plain strings are fine too
    snap = snapshot(adata)
    fig, (ax_sp, ax_box) = plt.subplots(1, 2)
    scsiam.pl.spatial(adata, ax=ax_sp, show=False)
    scsiam.pl.cluster_confidence(adata, ax=ax_box, show=False)
    assert_unchanged(adata, snap)
    assert adata.obs["siamese_clusters"].dtype == object
    legend = [to_hex(h.get_facecolor()[0], keep_alpha=False) for h in ax_sp.get_legend().legend_handles]
    boxes = [to_hex(p.get_facecolor(), keep_alpha=False) for p in ax_box.patches]
    assert legend == boxes
    if with_colors:
        assert boxes == list(adata.uns["siamese_clusters_colors"])


def test_spatial_missing_keys():
    pytest.importorskip("squidpy")
    adata = fake_result()
    with pytest.raises(KeyError, match=r"obsm\['coords'\] is missing.*spatial_key"):
        scsiam.pl.spatial(adata, spatial_key="coords", show=False)
    with pytest.raises(KeyError, match=r"obs\['foo_clusters'\] is missing; run scsiam.tl.siamese_clu"):
        scsiam.pl.spatial(adata, key_added="foo", show=False)
    with pytest.raises(KeyError, match="neither a column of obs nor a gene"):
        scsiam.pl.spatial(adata, color="nope", show=False)


# ----------------------------------------------------------------------------- confidence
@pytest.mark.parametrize("measure", ["max_probability", "entropy"])
def test_cluster_confidence_returns_figure_and_leaves_adata_unchanged(measure):
    adata = fake_result()
    snap = snapshot(adata)
    fig = scsiam.pl.cluster_confidence(adata, measure=measure, return_fig=True)  # computes a private UMAP
    assert isinstance(fig, Figure)
    assert_unchanged(adata, snap)
    box_ax, emb_ax = fig.axes[:2]
    assert [t.get_text() for t in box_ax.get_xticklabels()] == [str(i) for i in range(K)]
    assert emb_ax.get_xlabel() == "UMAP 1"


def test_cluster_confidence_uses_stored_colours_and_basis():
    adata = fake_result(with_colors=True)
    adata.obsm["X_umap"] = np.random.default_rng(1).normal(size=(N_OBS, 2))
    snap = snapshot(adata)
    fig = scsiam.pl.cluster_confidence(adata, basis="umap", return_fig=True)
    assert_unchanged(adata, snap)
    box_ax = fig.axes[0]
    faces = [to_hex(p.get_facecolor(), keep_alpha=False) for p in box_ax.patches]
    assert faces == list(adata.uns["siamese_clusters_colors"])


def test_cluster_confidence_into_given_axes_draws_only_the_box_panel():
    adata = fake_result()
    del adata.obsm["X_siamese"]  # no embedding needed for the per-cluster panel
    fig, ax = plt.subplots()
    ret = scsiam.pl.cluster_confidence(adata, measure="entropy", ax=ax, show=False)
    assert ret is ax
    assert fig.axes == [ax]
    assert len(ax.patches) == K


def test_cluster_confidence_missing_keys():
    adata = fake_result()
    with pytest.raises(KeyError, match=r"obsm\['foo_probabilities'\] is missing.*siamese_clu"):
        scsiam.pl.cluster_confidence(adata, key_added="foo", show=False)
    with pytest.raises(KeyError, match=r"obsm\['nope'\] is missing"):
        scsiam.pl.cluster_confidence(adata, basis="nope", show=False)
    del adata.obsm["X_siamese"]
    with pytest.raises(KeyError, match=r"obsm\['X_siamese'\] is missing.*basis"):
        scsiam.pl.cluster_confidence(adata, show=False)
    with pytest.raises(ValueError, match="measure"):
        scsiam.pl.cluster_confidence(adata, measure="margin", show=False)


def test_confidence_measures():
    p = fake_result().obsm["siamese_probabilities"]
    ent = _confidence(p, "entropy")
    assert ent.shape == (N_OBS,)
    assert (ent >= 0).all() and (ent <= 1).all()
    np.testing.assert_allclose(_confidence(np.eye(K), "entropy"), 0.0, atol=1e-12)  # one-hot: certain
    np.testing.assert_allclose(_confidence(np.full((3, K), 1 / K), "entropy"), 1.0)  # uniform: maximal
    mp = _confidence(p, "max_probability")
    np.testing.assert_allclose(mp, p.max(1))
    assert (mp >= 1 / K - 1e-12).all() and (mp <= 1).all()


# ----------------------------------------------------------------------------- embedding / history
def test_embedding_one_and_several_colours_leave_adata_unchanged():
    adata = fake_result()
    adata.obs["group"] = pd.Categorical(np.repeat(["a", "b"], N_OBS // 2))
    snap = snapshot(adata)
    fig = scsiam.pl.embedding(adata, return_fig=True)
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() == "UMAP 1"
    fig = scsiam.pl.embedding(adata, color=["siamese_clusters", "group"], return_fig=True)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == ["siamese_clusters", "group"]
    assert_unchanged(adata, snap)
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="several panels"):
        scsiam.pl.embedding(adata, color=["siamese_clusters", "group"], ax=ax)
    with pytest.raises(KeyError, match="siamese_clu"):
        scsiam.pl.embedding(adata, key_added="other")


def test_embedding_colours_by_gene_and_keeps_a_stored_umap_untouched():
    adata = fake_result(with_colors=True)
    fig = scsiam.pl.embedding(adata, color="gene3", return_fig=True)  # UMAP computed privately
    assert fig.axes[0].get_title() == "gene3"
    adata.obsm["X_siamese_umap"] = np.random.default_rng(1).normal(size=(N_OBS, 2))
    snap = snapshot(adata)
    colours = adata.uns["siamese_clusters_colors"].copy()
    for color in ("siamese_clusters", "gene3"):
        assert isinstance(scsiam.pl.embedding(adata, color=color, return_fig=True), Figure)
    assert_unchanged(adata, snap)  # scanpy's colour writes stay in the private copy
    np.testing.assert_array_equal(adata.uns["siamese_clusters_colors"], colours)
    adata2 = fake_result()
    adata2.obsm["X_siamese_umap"] = adata.obsm["X_siamese_umap"]
    snap2 = snapshot(adata2)
    scsiam.pl.embedding(adata2, return_fig=True)
    assert_unchanged(adata2, snap2)  # no uns['siamese_clusters_colors'] added


def test_training_history_draws_every_loss_and_the_phase_mark():
    history = {
        "train_loss": np.linspace(3, 1, 6),
        "loss_reconstruction": np.linspace(2, 1, 6),
        "loss_cluster": np.array([0, 0, 0, 0.5, 0.4, 0.3]),
        "cluster_weight": np.array([0, 0, 0, 0.5, 1, 1]),
    }
    fig = scsiam.pl.training_history(history, return_fig=True)
    ax = fig.axes[0]
    assert len(ax.get_lines()) >= 3
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {
        "train_loss",
        "loss_reconstruction",
        "loss_cluster",
    }
    with pytest.raises(ValueError, match="train the model"):
        scsiam.pl.training_history({})


def test_training_history_places_clustering_only_metrics_at_their_epochs():
    import pandas as pd

    def frame(key, epochs, values):
        return pd.DataFrame({key: values}, index=pd.Index(epochs, name="epoch"))

    history = {
        "train_loss": frame("train_loss", range(6), np.linspace(3, 1, 6)),
        "cluster_weight": frame("cluster_weight", range(6), [0, 0, 0, 0.5, 1, 1]),
        "assignment_change": frame("assignment_change", [4, 5], [0.2, 0.1]),
    }
    fig = scsiam.pl.training_history(history, keys=["train_loss", "assignment_change"], return_fig=True)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    np.testing.assert_array_equal(lines["train_loss"].get_xdata(), np.arange(1, 7))
    np.testing.assert_array_equal(lines["assignment_change"].get_xdata(), [5, 6])
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0  # non-negative terms: no empty negative half
    assert all(float(t).is_integer() for t in ax.get_xticks())  # whole epochs


# ----------------------------------------------------------------------------- issue: plots as scanpy's
def test_every_plot_returns_its_axes_with_show_false():
    from matplotlib.axes import Axes

    adata = fake_result()
    adata.obs["group"] = pd.Categorical(np.repeat(["a", "b"], N_OBS // 2))
    ax = scsiam.pl.embedding(adata, show=False)
    assert isinstance(ax, Axes)
    axs = scsiam.pl.embedding(adata, color=["siamese_clusters", "group"], show=False)
    assert isinstance(axs, list) and len(axs) == 2 and all(isinstance(a, Axes) for a in axs)
    axs = scsiam.pl.cluster_confidence(adata, show=False)
    assert len(axs) == 2 and axs[0].get_title().endswith("per cluster")
    history = {"train_loss": np.linspace(3, 1, 4), "cluster_weight": np.array([0, 0, 1, 1])}
    assert isinstance(scsiam.pl.training_history(history, show=False), Axes)
    if pytest.importorskip("squidpy"):
        assert isinstance(scsiam.pl.spatial(adata, show=False), Axes)


def test_embedding_draws_scanpys_umap_of_the_scsiam_embedding():
    adata = fake_result()
    adata.obsm["X_umap"] = np.random.default_rng(3).normal(size=(N_OBS, 2))
    adata.uns["umap"] = {"params": {}}
    adata.uns["neighbors"] = {"params": {"use_rep": "X_siamese"}}
    ax = scsiam.pl.embedding(adata, show=False)
    drawn = np.concatenate([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(np.sort(drawn[:, 0]), np.sort(adata.obsm["X_umap"][:, 0]))
    # a UMAP of other neighbours (e.g. of PCA) is not the scsiam embedding's: computed instead
    adata.uns["neighbors"] = {"params": {"use_rep": "X_pca"}}
    ax = scsiam.pl.embedding(adata, show=False)
    drawn = np.concatenate([c.get_offsets() for c in ax.collections])
    assert not np.allclose(np.sort(drawn[:, 0]), np.sort(adata.obsm["X_umap"][:, 0]))


def test_confidence_on_tissue_is_drawn_as_pl_spatial_draws_it():
    adata = fake_result()
    _, ax_emb = scsiam.pl.cluster_confidence(adata, basis="spatial", show=False)
    assert ax_emb.yaxis_inverted()  # rows grow downwards, as in squidpy's spatial_scatter
    if pytest.importorskip("squidpy"):
        assert scsiam.pl.spatial(adata, show=False).yaxis_inverted()


def test_legends_of_30_clusters_stay_beside_their_panel():
    rng = np.random.default_rng(0)
    n = 300
    adata = ad.AnnData(X=rng.poisson(2.0, size=(n, 5)).astype(np.float32))
    adata.obsm["X_siamese"] = rng.normal(size=(n, 8)).astype(np.float32)
    adata.obsm["X_siamese_umap"] = rng.normal(size=(n, 2))
    names = [f"cluster {i}" for i in range(30)]
    adata.obs["siamese_clusters"] = pd.Categorical(np.array(names)[np.arange(n) % 30], categories=names)
    adata.obs["other"] = pd.Categorical(np.array(names[::-1])[np.arange(n) % 30], categories=names[::-1])
    fig = scsiam.pl.embedding(adata, color=["siamese_clusters", "other"], return_fig=True)
    fig.canvas.draw()
    panels = [a for a in fig.axes if a.get_title()]
    legend = panels[0].get_legend()
    assert legend is not None and len(legend.get_texts()) == 30
    assert legend.get_window_extent().x1 <= panels[1].get_window_extent().x0


def test_training_history_leaves_out_the_clustering_loss_before_clustering():
    history = {
        "train_loss": np.linspace(3, 1, 6),
        "loss_cluster_train": np.array([0, 0, 0, 0.5, 0.4, 0.3]),  # as scvi-tools names it
        "loss_kl_train": np.zeros(6),  # an autoencoder's: nothing to draw
        "cluster_weight": np.array([0, 0, 0, 0.5, 1, 1]),
    }
    ax = scsiam.pl.training_history(history, show=False)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert "loss_kl" not in lines
    y = np.asarray(lines["loss_cluster"].get_ydata(), dtype=float)  # drawn without the suffix
    assert np.isnan(y[:3]).all() and np.isfinite(y[3:]).all()
