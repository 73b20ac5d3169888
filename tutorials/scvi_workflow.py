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
# # An scvi-tools workflow: set up, train, save, load, embed new cells
#
# {class}`scsiam.SiameseCluModel` is an scvi-tools model. This tutorial uses it the way scVI
# users know:
#
# 1. register the data with {meth}`~scsiam.SiameseCluModel.setup_anndata`;
# 2. create the model and train it, then read the training history;
# 3. save and load it;
# 4. embed and assign cells the model has never seen (the model is inductive: no parameter
#    belongs to a particular cell).
#
# The notebook is generated from `tutorials/scvi_workflow.py`; re-run it with `make tutorials`.

# %%
import tempfile
from importlib.metadata import version

import numpy as np
import scvi

import scsiam
from scsiam import SiameseCluModel

scvi.settings.seed = 0
print("scsiam", version("scsiam"), "| scvi-tools", version("scvi-tools"))

# %% [markdown]
# ## Data: a training set and held-out cells
#
# We use the shipped *C. elegans* neurons (raw counts). The reference labels are set aside for
# evaluation, and 20 % of the cells are held out to show inference on new cells.

# %%
adata = scsiam.datasets.worm_neuron()
labels = adata.obs["cell_type"].astype(str).copy()
adata.obs = adata.obs.drop(columns=["cell_type", "label_code"])
rng = np.random.default_rng(0)
held_out = rng.random(adata.n_obs) < 0.2
train, new = adata[~held_out].copy(), adata[held_out].copy()
print(f"training cells: {train.n_obs}, held-out cells: {new.n_obs}")

# %% [markdown]
# ## Set up and create the model
#
# `setup_anndata` registers the counts (here `X`; use `layer=` for a counts layer), an optional
# `batch_key`, and the cell graph. Without `graph_key`, a label-free kNN graph is built and
# stored in `obsp["siamese_connectivities"]` (pass `graph_key="connectivities"` to reuse
# `sc.pp.neighbors`). The likelihood is chosen from the data: negative binomial for counts.

# %%
SiameseCluModel.setup_anndata(train)
model = SiameseCluModel(train, n_clusters=10)
model

# %% [markdown]
# ## Train
#
# Training runs in two phases: pretraining of the Siamese encoders, then KMeans initialisation
# of the cluster centres and the optimal-transport clustering phase. Epochs and batch size
# default to values chosen from the number of cells; we shorten training to keep the notebook
# quick on a CPU. `checkpoint_dir=` would make an interrupted run resumable.

# %%
model.train(max_epochs=20, progress_bar=False)

# %% [markdown]
# `model.history` holds every loss term per epoch; {func}`scsiam.pl.training_history` plots them
# with the start of the clustering phase marked.

# %%
print(sorted(model.history))
scsiam.pl.training_history(model)

# %% [markdown]
# `assignment_change` is logged from the second clustering epoch on: the share of cells whose
# cluster changed since the epoch before. Clustering stops early once it falls below
# `train(tol=...)`.

# %%
model.history["assignment_change"]

# %% [markdown]
# ## Embedding and clusters of the training cells

# %%
z = model.get_latent_representation()
q = model.predict(soft=True)
train.obsm["X_siamese"] = z
train.obs["siamese_clusters"] = q.argmax(1).astype(str)
print(z.shape, q.shape, "rows of q sum to", q.sum(1).round(3)[:3])
scsiam.metrics.evaluate(labels[~held_out], train.obs["siamese_clusters"])

# %% [markdown]
# ## Save and load
#
# `save` writes the weights, the registry and the history. `load` reads them back with
# `torch.load(weights_only=True)`, which cannot run code from the file; `trusted=True` is only
# needed for files written by old versions.

# %%
with tempfile.TemporaryDirectory() as folder:
    model.save(folder, overwrite=True)
    loaded = SiameseCluModel.load(folder, adata=train)
print("same embedding after loading:", np.allclose(loaded.get_latent_representation(), z, atol=1e-5))

# %% [markdown]
# ## New cells
#
# Cells the model has not seen need the same genes in the same order. The model builds their
# cell graph with the settings used for training, then embeds and assigns them; the training
# object is not touched.

# %%
z_new = loaded.get_latent_representation(new)
labels_new = loaded.predict(new)
print(z_new.shape)
scsiam.metrics.evaluate(labels[held_out], labels_new.astype(str))

# %% [markdown]
# Genes that do not match are reported before anything is computed:

# %%
try:
    loaded.get_latent_representation(new[:, ::-1].copy())
except ValueError as err:
    print(err)
