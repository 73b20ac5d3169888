# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Quick start: clustering C. elegans neurons
#
# This tutorial clusters a small single-cell RNA-seq data set with **scsiam**, the scverse
# implementation of scSiameseClu, inside an ordinary scanpy workflow:
#
# 1. load raw counts and put the reference labels aside;
# 2. cluster with {func}`scsiam.tl.siamese_clu` and look at what it writes;
# 3. only then compare the clusters with the labels;
# 4. plot the embedding and find marker genes of each cluster with scanpy.
#
# The notebook is generated from `tutorials/quickstart.py` (jupytext percent format);
# re-run it with `make tutorials`.

# %%
import time
from importlib.metadata import version

import matplotlib.pyplot as plt
import scanpy as sc

import scsiam

print("scsiam", version("scsiam"), "| scanpy", version("scanpy"))

# %% [markdown]
# ## Load the data
#
# {func}`scsiam.datasets.worm_neuron` returns 4,186 *C. elegans* neurons profiled by
# sci-RNA-seq (Cao et al., 2017), restricted to 2,000 genes, as raw counts in `adata.X`.
# The columns `cell_type` and `label_code` hold reference annotations. scsiam never reads
# labels, but to make that explicit we remove them from the object before fitting.

# %%
adata = scsiam.datasets.worm_neuron()
reference = adata.obs[["cell_type", "label_code"]].copy()  # kept aside for evaluation only
adata.obs = adata.obs.drop(columns=["cell_type", "label_code"])
adata

# %% [markdown]
# ## Cluster
#
# {func}`scsiam.tl.siamese_clu` builds a label-free kNN cell graph, trains the Siamese
# network on sampled subgraphs (pretraining, then optimal-transport clustering) and writes the
# results into `adata`. With `n_clusters=None` it would estimate the number of clusters itself.
#
# ```{note}
# To keep this notebook quick on a laptop CPU we train for only 20 epochs
# (`train_kwargs=dict(max_epochs=20)`). By default the number of epochs is chosen from the
# number of cells and is larger, which usually gives better clusters.
# ```

# %%
t0 = time.perf_counter()
model = scsiam.tl.siamese_clu(
    adata,
    n_clusters=10,
    random_state=0,
    progress_bar=False,
    train_kwargs=dict(max_epochs=20),
    return_model=True,
)
print(f"fitted in {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# The keys written to `adata` (the prefix is `key_added="siamese"`):
#
# - `obs["siamese_clusters"]`: hard cluster labels (categorical);
# - `obsm["X_siamese"]`: the fused cell embedding;
# - `obsm["siamese_probabilities"]`: soft assignments, one column per cluster, rows sum to 1;
# - `uns["siamese_clu"]`: the parameters of the run.

# %%
adata

# %%
adata.obs["siamese_clusters"].value_counts().sort_index()

# %%
print(adata.obsm["X_siamese"].shape, adata.obsm["siamese_probabilities"].shape)
adata.uns["siamese_clu"]["params"]

# %% [markdown]
# The training history records every loss term per epoch; the dashed line marks the start of
# the clustering phase.

# %%
scsiam.pl.training_history(model)

# %% [markdown]
# ## Evaluate against the reference labels
#
# Now that fitting is over, we bring the labels back and score the clustering with
# {func}`scsiam.metrics.evaluate`: adjusted Rand index (ARI), normalised mutual information (NMI)
# and accuracy after the best one-to-one matching of clusters to classes (ACC).

# %%
adata.obs["cell_type"] = reference["cell_type"]
scores = scsiam.metrics.evaluate(adata.obs["cell_type"], adata.obs["siamese_clusters"])
{name: round(value, 3) for name, value in scores.items()}

# %% [markdown]
# With 20 epochs this run scores an ARI of about 0.45 against the reference. The default
# schedule averages 0.469 on this file over seeds 0–2, and the best peer on the benchmarks page
# (scVI + Leiden searched to give 10 clusters) 0.547: these neurons are a hard case, and the
# clusters below split some annotated types and merge others.
#
# ## Plot the embedding
#
# {func}`scsiam.pl.embedding` draws a UMAP of `obsm["X_siamese"]`, coloured by the clusters by
# default; any `obs` column can be passed as `color`. A UMAP computed by scanpy from the scsiam
# embedding is drawn as it is, so both plots below share one layout.

# %%
sc.pp.neighbors(adata, use_rep="X_siamese")
sc.tl.umap(adata, random_state=0)
scsiam.pl.embedding(adata)

# %%
scsiam.pl.embedding(adata, color="cell_type")

# %% [markdown]
# ## Marker genes per cluster
#
# Differential expression is run with scanpy on a log-normalised copy (the counts in
# `adata.X` stay untouched). The gene names of this data set are anonymised (`gene0`, ...).

# %%
lognorm = adata.copy()
sc.pp.normalize_total(lognorm, target_sum=1e4)
sc.pp.log1p(lognorm)
sc.tl.rank_genes_groups(lognorm, "siamese_clusters", method="wilcoxon")
sc.get.rank_genes_groups_df(lognorm, group=None).groupby("group", observed=True).head(3)

# %% [markdown]
# The dot plot orders the clusters by a dendrogram computed on the scsiam embedding.

# %%
sc.tl.dendrogram(lognorm, "siamese_clusters", use_rep="X_siamese")
sc.pl.rank_genes_groups_dotplot(lognorm, n_genes=3, show=False)
plt.show()
