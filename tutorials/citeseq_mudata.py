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
# # CITE-seq: clustering RNA and protein together
#
# CITE-seq measures RNA and surface proteins (antibody-derived tags, ADTs) in the same cells,
# and the data usually arrive as a {class}`~mudata.MuData`. scsiam encodes each modality with
# its own encoder (RNA counts with a negative-binomial likelihood, CLR-normalised proteins with
# a gaussian one), fuses them, and also pairs the RNA view of a cell with its protein view.
#
# The data: 3,000 cord-blood mononuclear cells (Stoeckius et al., 2017), 2,000 genes and 10
# ADTs, shipped with scsiam.
#
# The notebook is generated from `tutorials/citeseq_mudata.py`; re-run it with `make tutorials`.

# %%
import logging
import warnings

import scsiam
from scsiam import SiameseCluModel

for name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
warnings.filterwarnings("ignore", message="IProgress not found")
warnings.filterwarnings("ignore", category=FutureWarning)

# %%
mdata = scsiam.datasets.cbmc_citeseq()
reference = mdata.obs["cell_type"].astype(str).copy()  # for evaluation only
for a in (mdata, mdata.mod["rna"]):
    a.obs = a.obs.drop(columns=["cell_type"])
mdata

# %% [markdown]
# ## The scanpy-style call
#
# {func}`scsiam.tl.siamese_clu` on a MuData clusters the `rna` modality together with a
# protein modality named `prot`, `protein` or `adt` (`protein_mod=` names another one;
# `protein_mod=None` uses RNA alone). The results go to the top level: `mdata.obsm["X_siamese"]`,
# `mdata.obs["siamese_clusters"]`.

# %%
scsiam.tl.siamese_clu(mdata, n_clusters=15, random_state=0, progress_bar=False)
mdata.uns["siamese_clu"]["params"]

# %% [markdown]
# For comparison, RNA alone on the same cells and seed:

# %%
scsiam.tl.siamese_clu(
    mdata, n_clusters=15, protein_mod=None, key_added="rna_only", random_state=0, progress_bar=False
)
scores = {
    "RNA + protein": scsiam.metrics.evaluate(reference, mdata.obs["siamese_clusters"]),
    "RNA only": scsiam.metrics.evaluate(reference, mdata.obs["rna_only_clusters"]),
}
{name: {k: round(v, 3) for k, v in s.items()} for name, s in scores.items()}

# %%
mdata.obs["cell type (reference)"] = reference.values
scsiam.pl.embedding(mdata, color=["siamese_clusters", "cell type (reference)"])

# %% [markdown]
# ## The scvi-tools way: `setup_mudata`
#
# `modalities` says which modality holds what. Without `graph_key`, a joint cell graph is built
# from an RNA kNN graph and a protein kNN graph (`protein_weight=0.5`) and stored in
# `mdata.obsp["siamese_connectivities"]`.

# %%
SiameseCluModel.setup_mudata(mdata, modalities={"rna_layer": "rna", "protein_layer": "prot"})
model = SiameseCluModel(mdata, n_clusters=15)
model

# %%
model.train(max_epochs=20, progress_bar=False)
scsiam.pl.training_history(model)

# %%
scsiam.metrics.evaluate(reference, model.predict().astype(str))
