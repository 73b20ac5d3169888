"""Loaders of the datasets shipped inside the package (raw counts, labels for evaluation only)."""

from __future__ import annotations

from importlib.resources import as_file, files

import anndata as ad


def _read(name: str) -> ad.AnnData:
    with as_file(files("scsiam.datasets") / "_data" / name) as path:
        return ad.read_h5ad(path)


def worm_neuron() -> ad.AnnData:
    """C. elegans neurons, sci-RNA-seq: 4,186 cells × 2,000 genes, raw counts, 10 cell types.

    ``obs['cell_type']`` holds the reference labels (numeric codes ``c1…c10``); use them only
    to evaluate a clustering.

    Source: Cao et al. (2017), *Comprehensive single-cell transcriptional profiling of a
    multicellular organism*, Science 357:661. Top-2000-gene file from Tian et al. (2019),
    scDeepCluster (repository ttgump/scDCC, ``data/Small_Datasets/worm_neuron_cell_top2000.h5``,
    commit 142e4e03). Provenance is also in ``uns['source']``.
    """
    return _read("worm_neuron_top2000.h5ad")


def starmap_mpfc() -> ad.AnnData:
    """STARmap mouse medial prefrontal cortex, slice BZ5: 1,049 cells × 166 genes, raw counts.

    ``obsm['spatial']`` holds coordinates; ``obs['domain']`` the manual cortical layers (L1,
    L2/3, L5, L6) and ``obs['cell_type']`` the original cell classes, for evaluation only.

    Source: Wang et al. (2018), *Three-dimensional intact-tissue sequencing of single-cell
    transcriptional states*, Science 361:eaat5691; layer annotation from Li & Zhou (2022),
    BASS, Genome Biology 23:168 (repository zhengli09/BASS-Analysis, ``data/starmap_mpfc.RData``).
    """
    return _read("starmap_mpfc_BZ5.h5ad")


def cbmc_citeseq():
    """CITE-seq cord-blood mononuclear cells: a 3,000-cell sample as MuData (``rna`` + ``prot``).

    ``rna``: 2,000 genes, raw counts; ``prot``: 10 antibody-derived tags, CLR-normalised.
    ``obs['cell_type']`` holds 15 reference labels (codes), for evaluation only. The cells are
    a random sample (seed 0) of the 8,617 cells of the top-2000-gene file.

    Source: Stoeckius et al. (2017), *Simultaneous epitope and transcriptome measurement in
    single cells*, Nature Methods 14:865. File from Tian et al. (2021), scDCC (repository
    ttgump/scDCC, ``data/CITE_PBMC/CITE_CBMC_counts_top2000.h5``, commit 142e4e03).
    Provenance is also in ``uns['source']``.
    """
    import warnings

    import mudata as md

    with (
        as_file(files("scsiam.datasets") / "_data" / "cbmc_citeseq_3000.h5mu") as path,
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", category=FutureWarning, module="mudata")
        return md.read_h5mu(path)
