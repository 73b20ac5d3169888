"""The methods of the quality benchmark: scsiam, its ablations and variants, and the peers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks.data import PROTEIN_KEY, Dataset
from benchmarks.peers import scvi_epochs

PEER_VERSION = "peers-v1"  # bump when a peer's pipeline changes, so --reuse recomputes it


@dataclass(frozen=True)
class Method:
    name: str
    family: str  # "scsiam", "ablation", "variant", "peer"
    model_kwargs: dict = field(default_factory=dict)
    tl_kwargs: dict = field(default_factory=dict)  # further arguments of tl.siamese_clu
    train_kwargs: dict = field(default_factory=dict)  # arguments of SiameseCluModel.train
    auto_k: bool = False
    spatial_only: bool = False
    protein_only: bool = False  # runs only on files with obsm[PROTEIN_KEY] (CITE-seq)
    scvi: bool = False
    description: str = ""


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("scsiam", "scsiam", description="tl.siamese_clu defaults, k given"),
        Method("scsiam-autok", "scsiam", auto_k=True, description="tl.siamese_clu defaults, n_clusters=None"),
        Method("scsiam-protein", "scsiam", protein_only=True,
               description="tl.siamese_clu defaults, k given, RNA + CLR protein (obsm['protein_clr'])"),
        Method("scsiam-smooth", "scsiam", tl_kwargs={"spatial_smoothing": 3}, spatial_only=True,
               description="tl.siamese_clu defaults, k given, spatial_smoothing=3"),
        Method("scsiam-check", "variant", train_kwargs={"partition_choice": "modularity"},
               description="defaults, the start partition returned when its modularity is higher"),
        Method("scsiam-vae", "variant", {"backbone": "vae"}, train_kwargs={"partition_choice": "modularity"},
               description="count-VAE gene branch (scvi-tools Encoder, NB decoder, KL) trained first "
                           "on cells alone, then the Siamese phases; start-or-end check by modularity"),
        Method("scsiam-vae-unscaled", "variant", {"backbone": "vae", "input_scale": "unscaled"},
               train_kwargs={"partition_choice": "modularity"},
               description="scsiam-vae whose encoder reads unscaled log-normalised genes"),
        Method("scsiam-vae-kl01", "variant", {"backbone": "vae", "kl_weight": 0.1},
               train_kwargs={"partition_choice": "modularity"},
               description="scsiam-vae with the KL term weighted 0.1 (a less smoothed latent)"),
        Method("abl-noaug", "ablation",
               {"feature_augmentation": "none", "edge_drop_rate": 0.0, "diffusion": False},
               description="no feature/edge augmentation, no diffusion view"),
        Method("abl-nograph", "ablation", {"use_graph": False}, description="no graph branch"),
        Method("abl-nofusionloss", "ablation", {"w_fusion": 0.0}, description="fusion loss weight 0"),
        Method("abl-dec", "ablation", {"clustering_head": "dec"}, description="DEC head instead of OT"),
        Method("var-mask", "variant", {"feature_augmentation": "mask"}, description="masking augmentation"),
        Method("var-gat", "variant", {"graph_encoder": "gat"}, description="GAT graph encoder"),
        Method("var-concat", "variant", {"fusion": "concat"}, description="concatenation fusion"),
        Method("var-contrastive", "variant", {"fusion_loss": "contrastive"}, description="contrastive fusion loss"),
        Method("var-gmm", "variant", {"clustering_head": "gmm"}, description="GMM clustering head"),
        Method("var-ema", "variant", {"center_update": "ema"},
               description="OT centres as moving averages of their cells' embeddings"),
        Method("scanpy-leiden-default", "peer", description="scanpy pipeline, Leiden resolution 1.0"),
        Method("scanpy-leiden-k", "peer", description="scanpy pipeline, Leiden resolution searched for k"),
        Method("pca-kmeans", "peer", description="scanpy pipeline PCA 50, KMeans(k, n_init=10)"),
        Method("scvi-kmeans", "peer", scvi=True, description="scVI latent (HVG counts), KMeans(k)"),
        Method("scvi-leiden-k", "peer", scvi=True, description="scVI latent kNN 15, Leiden to k"),
        Method("wnn-leiden-k", "peer", protein_only=True,
               description="muon WNN of RNA PCA + protein PCA (obsm['protein_clr']), Leiden to k"),
        Method("spatial-leiden-k", "peer", spatial_only=True,
               description="Leiden to k on expression kNN + squidpy spatial kNN (6), row-max normalised"),
    ]
}  # fmt: skip
PEERS = [n for n, m in METHODS.items() if m.family == "peer"]
ABLATIONS = [n for n, m in METHODS.items() if m.family in ("ablation", "variant")]
DEFAULT_METHODS = ["scsiam", "scsiam-autok", "scsiam-protein", "scsiam-smooth", *PEERS]


def is_peer(name: str) -> bool:
    return name in METHODS and METHODS[name].family == "peer"


def applies_to(method: Method, ds: Dataset) -> bool:
    """Whether ``method`` runs on ``ds`` (spatial-only methods on spatial files, protein ones on CITE-seq)."""
    if method.spatial_only and not ds.spatial:
        return False
    return not (method.protein_only and PROTEIN_KEY not in ds.adata.obsm)


def method_config(method: Method, ds: Dataset, args) -> dict:
    """The settings a CSV row records (``config``); ``--reuse`` skips a row only when they match."""
    if method.family == "peer":
        cfg: dict[str, Any] = {"pipeline": PEER_VERSION}
        if method.scvi:
            cfg["scvi_max_epochs"] = scvi_epochs(ds.adata.n_obs, args.scvi_epochs)
        return cfg
    cfg = {
        "model_kwargs": method.model_kwargs,
        "n_clusters": None if method.auto_k else ds.k,
        "spatial_key": "spatial" if ds.spatial else None,
    }
    if method.protein_only:
        cfg["protein_obsm_key"] = PROTEIN_KEY
    if method.tl_kwargs:
        cfg["tl_kwargs"] = method.tl_kwargs
    if method.train_kwargs:
        cfg["train_kwargs"] = method.train_kwargs
    return cfg


def select_methods(args) -> list[str]:
    """The method names of ``--methods``, or the default set (``--ablations``, ``--no-scvi``)."""
    if args.methods:
        unknown = [m for m in args.methods if m not in METHODS]
        if unknown:
            raise SystemExit(f"unknown --methods {unknown}; known: {list(METHODS)}")
        names = list(dict.fromkeys(args.methods))
    else:
        names = list(DEFAULT_METHODS)
        if args.ablations:
            names = (
                ["scsiam", *ABLATIONS] if args.ablations_only else [*DEFAULT_METHODS[:2], *ABLATIONS, *PEERS]
            )
    if args.no_scvi:
        names = [n for n in names if not METHODS[n].scvi]
    return names
