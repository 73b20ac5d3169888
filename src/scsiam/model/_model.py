"""SiameseCluModel: scSiameseClu as an scvi-tools model."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS, settings
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalObsField,
    LayerField,
    MuDataCategoricalObsField,
    MuDataLayerField,
    ObsmField,
)
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.train import TrainRunner
from scvi.utils import setup_anndata_dsp

from .._constants import DEFAULT_GRAPH_KEY, INPUT_GRAPH_KEY, SIAM_REGISTRY_KEYS
from .._validate import (
    check_batch_complete,
    check_finite,
    check_n_clusters,
    check_n_obs,
    check_not_view,
    get_layer,
    in_memory,
    is_count_matrix,
    keep_torch_threads,
    quiet_internal_warnings,
    restored_on_error,
    torch_threads_from_env,
)
from ..data._fields import MuDataObspField, ObspField
from ..data._graph import cell_graph, expression_pcs, ppr_graph
from ..dataloaders import CSRGraph
from ..module import SiameseModule
from ..dataloaders import CellSource, GraphDataSplitter
from ..train import SiameseTrainingPlan
from ..train._plan import clustering_options
from ._autok import estimate_n_clusters

logger = logging.getLogger(__name__)


class _PhaseTrainRunner(TrainRunner):
    """scvi's runner, with a history that keeps the metrics of every training phase.

    When a trained model trains again, scvi appends the new epochs only to the keys the
    history already holds, each at its own length. The clustering phase logs metrics that
    pretraining does not (``assignment_change``, ``clusters_reseeded``), so they were lost.
    Here every key of the new run is kept, and its epochs are numbered after the last epoch
    already recorded, so that all keys share one epoch axis.
    """

    def _update_history(self):
        old = self.model.history_
        if not (self.trainer.is_global_zero and self.model.is_trained_ and isinstance(old, dict) and old):
            return super()._update_history()
        new = getattr(self.trainer.logger, "history", None) or {}
        offset = 1 + max((int(max(v.index)) for v in old.values() if len(v)), default=-1)
        merged = dict(old)
        for key, frame in new.items():
            frame = frame.copy()
            frame.index = pd.Index(np.asarray(frame.index, dtype=np.int64) + offset, name="epoch")
            merged[key] = pd.concat([old[key], frame]) if key in old else frame
        self.model.history_ = merged


class SiameseCluModel(UnsupervisedTrainingMixin, BaseModelClass):
    """Siamese graph clustering of single cells (scSiameseClu, Xu et al., IJCAI 2025).

    Two stochastic views of each cell (augmented expression; perturbed and PPR-diffused
    graphs) pass through a shared gene MLP and graph GNN. Cross-correlation refinement and a
    gated fusion give the embedding; an optimal-transport head clusters it. Training runs on
    sampled subgraphs, so memory grows linearly with the number of cells.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_clusters
        Number of clusters, or ``None`` to estimate it without labels after pretraining.
    n_latent
        Size of the embedding.
    likelihood
        ``"auto"`` (negative binomial for counts, gaussian otherwise), ``"nb"``, ``"zinb"`` or ``"gaussian"``.
    ppr_alpha
        Teleport probability of the PPR diffusion view.
    ppr_top_k
        Entries kept per row of the PPR diffusion.
    **module_kwargs
        Further options of :class:`~scsiam.module.SiameseModule` (graph encoder, augmentation,
        fusion, clustering head, loss weights, ...). The model sets ``n_input``, ``n_batch``,
        ``n_protein`` and ``target_sum`` (the median library size) from the registered data;
        they cannot be passed here (``likelihood``, ``n_clusters`` and ``n_latent`` are the
        arguments above).

    Examples
    --------
    >>> SiameseCluModel.setup_anndata(adata)
    >>> model = SiameseCluModel(adata, n_clusters=10)
    >>> model.train()
    >>> adata.obsm["X_siamese"] = model.get_latent_representation()
    >>> adata.obs["siamese_clusters"] = model.predict().astype(str)
    """

    _module_cls = SiameseModule
    _training_plan_cls = SiameseTrainingPlan
    _data_splitter_cls = GraphDataSplitter
    _train_runner_cls = _PhaseTrainRunner

    def __init__(
        self,
        adata: AnnData | None = None,
        n_clusters: int | None = None,
        n_latent: int = 16,
        likelihood: str = "auto",
        ppr_alpha: float = 0.2,
        ppr_top_k: int = 16,
        **module_kwargs,
    ):
        super().__init__(adata)
        n_obs = self.adata.n_obs
        check_n_obs(n_obs)
        k = check_n_clusters(n_clusters, n_obs)
        X = in_memory(self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))
        counts = is_count_matrix(X)
        if likelihood == "auto":
            likelihood = "nb" if counts else "gaussian"
        elif likelihood in ("nb", "zinb") and not counts:
            raise ValueError(
                f"likelihood={likelihood!r} needs raw counts, but the registered matrix holds non-integer or negative "
                "values. Register the counts layer (setup_anndata(layer=...)) or use likelihood='gaussian'."
            )
        if likelihood == "gaussian" and not counts:
            warnings.warn(
                "The registered matrix is not raw counts (non-integer or negative values); using the gaussian "
                "likelihood on the values as given. Register raw counts for the count likelihood.",
                UserWarning,
                stacklevel=settings.warnings_stacklevel,
            )
        reserved = sorted(set(module_kwargs) & {"n_input", "n_batch", "n_protein", "target_sum"})
        if reserved:
            raise TypeError(
                f"{', '.join(reserved)} {'is' if len(reserved) == 1 else 'are'} set by SiameseCluModel from the "
                "registered data and cannot be passed as a module option; remove "
                f"{'it' if len(reserved) == 1 else 'them'}."
            )
        lib = np.asarray(X.sum(1)).ravel()
        target_sum = float(np.median(lib[lib > 0])) if (lib > 0).any() else 1e4
        protein = self._protein_matrix()
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_batch=self.summary_stats.n_batch,
            n_latent=n_latent,
            n_clusters=k,
            likelihood=likelihood,
            target_sum=target_sum,
            n_protein=0 if protein is None else protein.shape[1],
            **module_kwargs,
        )
        self._graph_cache = {}
        self._ppr_params = {"alpha": ppr_alpha, "top_k": ppr_top_k}
        self.n_clusters_ = k
        self.auto_k_ = None
        self.scsiam_version_ = _package_version()
        self._model_summary_string = (
            f"SiameseCluModel: n_latent={n_latent}, likelihood={likelihood}, "
            f"n_clusters={'auto' if k is None else k}, graph edges={self.summary_stats.n_edges}"
            + ("" if protein is None else f", proteins={protein.shape[1]}")
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------------------ set-up
    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        graph_key: str | None = None,
        spatial_key: str | None = None,
        spatial_weight: float = 0.5,
        graph_mode: str | None = None,
        protein_obsm_key: str | None = None,
        protein_weight: float = 0.5,
        n_neighbors: int = 15,
        n_pcs: int = 50,
        n_spatial_neighbors: int = 6,
        **kwargs,
    ):
        """%(summary)s.

        The cell graph is taken from ``adata.obsp[graph_key]``; when ``graph_key`` is ``None`` a
        label-free kNN graph (PCA of the log-normalised data, ``n_neighbors`` neighbours) is
        built. With ``spatial_key`` the graph follows ``graph_mode``: by default the spatial kNN
        graph (squidpy) alone, which leaves a given ``graph_key`` unused (with a warning);
        ``graph_mode="both"`` joins it with the expression or given graph, weighted by
        ``spatial_weight``; with ``batch_key`` no spatial edge joins two batches. The graph used
        is stored in ``adata.obsp['siamese_connectivities']``; next to scvi-tools' registration
        fields (``obs['_scvi_*']``, ``uns['_scvi_*']``) it is the only key written, and a call that
        fails writes nothing. Views are refused (call ``adata = adata.copy()`` first), and so is
        ``graph_key='siamese_connectivities'`` with ``spatial_key``, which would replace that
        graph with the one built from it.

        Parameters
        ----------
        %(param_adata)s
        %(param_layer)s
        %(param_batch_key)s
        graph_key
            Key of a sparse cell graph in ``adata.obsp`` (e.g. ``"connectivities"``).
        spatial_key
            Key of spatial coordinates in ``adata.obsm``.
        spatial_weight
            Weight of the spatial graph when combined with the expression graph (``"both"``).
        graph_mode
            With ``spatial_key``: ``"spatial"`` (default; the graph branch runs on the spatial kNN
            graph while the gene encoder sees expression), ``"both"`` (weighted union with the
            expression graph) or ``"expression"`` (coordinates not used for the graph).
        protein_obsm_key
            Key of a cells × proteins matrix in ``adata.obsm`` (e.g. CLR-normalised ADTs), encoded by
            its own encoder with a gaussian likelihood and paired with the RNA view.
        protein_weight
            Weight of the protein kNN graph in the built cell graph.
        n_neighbors, n_pcs
            Neighbours and principal components of the kNN graph built when ``graph_key`` is None.
        n_spatial_neighbors
            Neighbours of the spatial graph.
        """
        _reject_unknown("setup_anndata", kwargs)
        setup_method_args = cls._get_setup_method_args(**locals())
        check_not_view(adata)
        if graph_key == DEFAULT_GRAPH_KEY and spatial_key is not None:
            raise ValueError(
                f"graph_key={DEFAULT_GRAPH_KEY!r} is where setup_anndata stores the graph it builds with "
                "spatial_key, so your graph would be replaced. Store it under another key first, e.g. "
                f"`adata.obsp['my_graph'] = adata.obsp[{DEFAULT_GRAPH_KEY!r}]`, and pass graph_key='my_graph'."
            )
        with restored_on_error(adata):
            cls._register_anndata(
                adata, setup_method_args, layer, batch_key, graph_key, spatial_key, spatial_weight, graph_mode,
                protein_obsm_key, protein_weight, n_neighbors, n_pcs, n_spatial_neighbors, **kwargs,
            )  # fmt: skip

    @classmethod
    def _register_anndata(
        cls, adata, setup_method_args, layer, batch_key, graph_key, spatial_key, spatial_weight, graph_mode,
        protein_obsm_key, protein_weight, n_neighbors, n_pcs, n_spatial_neighbors, **kwargs,
    ):  # fmt: skip
        validate_adata(
            adata,
            layer=layer,
            graph_key=graph_key,
            spatial_key=spatial_key,
            batch_key=batch_key,
            protein_obsm_key=protein_obsm_key,
        )
        registered_key = graph_key
        if graph_key is None or spatial_key is not None:
            adata.obsp[DEFAULT_GRAPH_KEY] = build_graph(
                adata,
                layer=layer,
                graph_key=graph_key,
                spatial_key=spatial_key,
                batch_key=batch_key,
                spatial_weight=spatial_weight,
                graph_mode=graph_mode,
                protein_obsm_key=protein_obsm_key,
                protein_weight=protein_weight,
                n_neighbors=n_neighbors,
                n_pcs=n_pcs,
                n_spatial_neighbors=n_spatial_neighbors,
            )
            registered_key = DEFAULT_GRAPH_KEY
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            ObspField(SIAM_REGISTRY_KEYS.GRAPH_KEY, registered_key),
        ]
        if protein_obsm_key is not None:
            anndata_fields.append(ObsmField(SIAM_REGISTRY_KEYS.PROTEIN_KEY, protein_obsm_key))
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    @setup_anndata_dsp.dedent
    def setup_mudata(
        cls,
        mdata,
        rna_layer: str | None = None,
        protein_layer: str | None = None,
        batch_key: str | None = None,
        graph_key: str | None = None,
        protein_weight: float = 0.5,
        n_neighbors: int = 15,
        n_pcs: int = 50,
        modalities: dict[str, str] | None = None,
        **kwargs,
    ):
        """%(summary_mdata)s.

        RNA counts (negative-binomial likelihood) and, optionally, protein values such as
        CLR-normalised ADTs (gaussian likelihood) are each encoded by their own encoder, fused,
        and the RNA view of a cell is also paired with its protein view. The cell graph is
        ``mdata.obsp[graph_key]``, or, when ``graph_key`` is ``None``, the union of an RNA kNN
        graph and a protein kNN graph (weight ``protein_weight``), stored in
        ``mdata.obsp['siamese_connectivities']``.

        Parameters
        ----------
        %(param_mdata)s
        rna_layer
            Layer of the RNA modality with the counts (``None``: its ``X``).
        protein_layer
            Layer of the protein modality (``None``: its ``X``).
        batch_key
            Column of ``obs`` with batches.
        graph_key
            Key of a cell graph in ``mdata.obsp`` (built when ``None``).
        protein_weight
            Weight of the protein kNN graph in the built cell graph.
        n_neighbors, n_pcs
            Neighbours and RNA principal components of the built graph.
        %(param_modalities)s
            Keys: ``"rna_layer"`` (required), ``"protein_layer"`` (optional; leave it out for RNA
            only) and ``"batch_key"`` (optional; ``None`` reads ``mdata.obs``). Example:
            ``{"rna_layer": "rna", "protein_layer": "prot"}``.

        Examples
        --------
        >>> SiameseCluModel.setup_mudata(mdata, modalities={"rna_layer": "rna", "protein_layer": "prot"})
        >>> model = SiameseCluModel(mdata, n_clusters=15)
        """
        _reject_unknown("setup_mudata", kwargs)
        setup_method_args = cls._get_setup_method_args(**locals())
        try:
            from mudata import MuData
        except ImportError as e:  # pragma: no cover
            raise ImportError("setup_mudata needs mudata: `pip install mudata`.") from e
        if not isinstance(mdata, MuData):
            raise TypeError(
                f"setup_mudata expects a MuData, got {type(mdata).__name__}; use setup_anndata for AnnData."
            )
        check_not_view(mdata, "mdata")
        if modalities is None or "rna_layer" not in modalities:
            raise ValueError(
                "setup_mudata needs modalities={'rna_layer': <RNA modality>, 'protein_layer': <protein modality>}, "
                f"e.g. {{'rna_layer': 'rna', 'protein_layer': 'prot'}}; modalities present: {list(mdata.mod)}."
            )
        for arg, mod in modalities.items():
            if mod is not None and mod not in mdata.mod:
                raise KeyError(
                    f"modalities[{arg!r}]={mod!r} is not a modality of the MuData ({list(mdata.mod)})."
                )
        modalities_ = cls._create_modalities_attr_dict(modalities, setup_method_args)
        rna = mdata.mod[modalities_.rna_layer]
        protein_values = None
        if modalities_.protein_layer is not None:
            prot = mdata.mod[modalities_.protein_layer]
            protein_values = get_layer(prot, protein_layer)
            check_finite(protein_values, f"the {modalities_.protein_layer!r} modality")
        X = get_layer(rna, rna_layer)
        check_n_obs(mdata.n_obs)
        check_finite(X, f"the {modalities_.rna_layer!r} modality")
        if rna.n_obs != mdata.n_obs or (
            protein_values is not None and protein_values.shape[0] != mdata.n_obs
        ):
            raise ValueError(
                "Every cell must be present in every modality used; intersect the modalities first (muon.pp.intersect_obs)."
            )
        batch_holder = mdata if modalities_.batch_key is None else mdata.mod[modalities_.batch_key]
        if batch_key is not None and batch_key not in batch_holder.obs:
            raise KeyError(f"batch_key {batch_key!r} is not a column of obs.")
        if batch_key is not None:
            check_batch_complete(batch_holder.obs[batch_key], batch_key)
        with restored_on_error(mdata):
            cls._register_mudata(
                mdata, setup_method_args, modalities_, X, protein_values, rna_layer, protein_layer, batch_key,
                graph_key, protein_weight, n_neighbors, n_pcs, **kwargs,
            )  # fmt: skip

    @classmethod
    def _register_mudata(
        cls, mdata, setup_method_args, modalities_, X, protein_values, rna_layer, protein_layer, batch_key,
        graph_key, protein_weight, n_neighbors, n_pcs, **kwargs,
    ):  # fmt: skip
        registered_key = graph_key
        if graph_key is None:
            mdata.obsp[DEFAULT_GRAPH_KEY] = cell_graph(
                X,
                protein=protein_values,
                protein_weight=protein_weight,
                n_neighbors=n_neighbors,
                n_pcs=n_pcs,
                is_counts=is_count_matrix(X),
            )
            registered_key = DEFAULT_GRAPH_KEY
        elif graph_key not in mdata.obsp:
            raise KeyError(f"Graph {graph_key!r} is not in mdata.obsp (keys: {list(mdata.obsp.keys())}).")
        fields = [
            MuDataLayerField(
                REGISTRY_KEYS.X_KEY,
                rna_layer,
                mod_key=modalities_.rna_layer,
                is_count_data=False,
                mod_required=True,
            ),
            MuDataCategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key, mod_key=modalities_.batch_key),
            MuDataObspField(SIAM_REGISTRY_KEYS.GRAPH_KEY, registered_key, mod_key=None),
        ]
        if modalities_.protein_layer is not None:
            fields.append(
                MuDataLayerField(
                    SIAM_REGISTRY_KEYS.PROTEIN_KEY,
                    protein_layer,
                    mod_key=modalities_.protein_layer,
                    is_count_data=False,
                    mod_required=True,
                )
            )
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    def _protein_matrix(self, adata_manager=None):
        manager = adata_manager or self.adata_manager
        if SIAM_REGISTRY_KEYS.PROTEIN_KEY not in manager.data_registry:
            return None
        P = manager.get_from_registry(SIAM_REGISTRY_KEYS.PROTEIN_KEY)
        P = P.toarray() if sp.issparse(P) else np.asarray(P)
        return P.astype(np.float32)

    # ------------------------------------------------------------------------------ data
    def _graphs(self, adata_manager) -> tuple[CellSource, CSRGraph, CSRGraph]:
        """Per-cell arrays and the two graph views of a registered AnnData (cached per manager)."""
        key = adata_manager.id
        if key not in self._graph_cache:
            A = adata_manager.get_from_registry(SIAM_REGISTRY_KEYS.GRAPH_KEY)
            X = in_memory(adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))
            batch = adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)
            check_finite(X, "the registered expression matrix")
            P = ppr_graph(A, alpha=self._ppr_params["alpha"], top_k=self._ppr_params["top_k"])
            source = CellSource(X, np.asarray(batch).ravel(), self._protein_matrix(adata_manager))
            self._graph_cache = {key: (source, CSRGraph(A), CSRGraph(P))}
        return self._graph_cache[key]

    def _splitter(self, adata_manager=None, **kwargs) -> GraphDataSplitter:
        source, graph, ppr = self._graphs(adata_manager or self.adata_manager)
        return self._data_splitter_cls(source, graph, ppr, **kwargs)

    # ------------------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        n_epochs_pretrain: int | None = None,
        lr: float = 1e-3,
        batch_size: int | None = None,
        fanout: int | None = 10,
        num_hops: int = 1,
        cluster_weight: float = 0.3,
        ramp_epochs: int = 5,
        tol: float = 1e-3,
        reseed_empty: bool = False,
        anneal_lr: bool = False,
        center_lr: float | None = None,
        center_init: str = "embedding",
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        progress_bar: bool | None = None,
        seed: int | None = None,
        checkpoint_dir: str | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train in two phases: pretraining, centre initialisation (KMeans), clustering.

        Parameters
        ----------
        max_epochs
            Total epochs over both phases (default chosen from the number of cells).
        n_epochs_pretrain
            Epochs of the pretraining phase (default: half of ``max_epochs``).
        lr
            Learning rate (Adam).
        batch_size
            Seed cells per minibatch (default chosen from the number of cells).
        fanout
            Neighbours sampled per node and hop during training (``None``: all).
        num_hops
            Hops of the sampled neighbourhoods.
        cluster_weight
            Final weight of the clustering loss; ramped over ``ramp_epochs``. Large weights
            let the clustering term outweigh reconstruction and collapse the embedding.
        ramp_epochs
            Epochs over which the clustering weight rises to ``cluster_weight``.
        tol
            Stop clustering once fewer than this fraction of cells change cluster in an epoch.
        reseed_empty
            When a cluster holds no cell at the end of a clustering epoch, move its centre into
            the largest cluster. This keeps more of the ``n_clusters`` clusters asked for, but
            scored lower on the benchmark files where clusters empty out (CBMC), so it is off
            by default.
        anneal_lr
            Lower the learning rate along a half cosine to 0 during the clustering phase, so the
            clusters settle before the final epoch (otherwise ``lr`` stays constant). On data
            with few minibatches per epoch (hundreds of cells) the last large steps can move many
            cells between clusters; on larger files the steps at full rate improved the
            clusters, so it is off by default (see the benchmarks page).
        center_lr
            Learning rate of the cluster centres in the clustering phase, when they are learned
            by gradient (``None``: ``lr``). Adam moves each centre by about this much per step,
            while the encoder can move the embedding much further, away from every centre.
        center_init
            Where the clustering phase starts. ``"embedding"``: KMeans(k) on the pretrained
            embedding. ``"pca"``: KMeans(k) on the first ``n_latent`` principal components of
            the expression the encoder reads (log-normalised counts, or the values as given
            with the gaussian likelihood; the RNA only for multimodal data), each centre then
            being the mean pretrained embedding of its cluster.
        accelerator, devices
            Lightning accelerator and devices; ``strategy="ddp"`` etc. pass through ``trainer_kwargs``.
        progress_bar
            Show progress bars (default: on, except when the environment variable ``CI`` is set).
        seed
            Seed of sampling, augmentation and KMeans (default: ``scvi.settings.seed`` or 0).
        checkpoint_dir
            Folder for a checkpoint written after every epoch (``pretrain.ckpt``, ``cluster.ckpt``).
            When it already holds checkpoints of an interrupted run, training resumes from them;
            on CPU with the same seed the result equals an uninterrupted run. Checkpoints of
            another model (other genes or sizes) or of another ``n_clusters`` raise an error
            before anything is trained.
        plan_kwargs
            Extra arguments of :class:`~scsiam.train.SiameseTrainingPlan`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (a Lightning trainer).
        """
        n_obs = self.adata.n_obs
        defaults = default_schedule(n_obs)
        max_epochs = int(max_epochs if max_epochs is not None else defaults["max_epochs"])
        if max_epochs < 2:
            raise ValueError(f"max_epochs must be at least 2 (one per phase), got {max_epochs}.")
        n_pre = int(n_epochs_pretrain if n_epochs_pretrain is not None else max(1, max_epochs // 2))
        if not 1 <= n_pre < max_epochs:
            raise ValueError(
                f"n_epochs_pretrain must lie in [1, max_epochs - 1], got {n_pre} (max_epochs={max_epochs})."
            )
        batch_size = int(batch_size if batch_size is not None else defaults["batch_size"])
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive number of cells, got {batch_size}.")
        seed = int(seed if seed is not None else (settings.seed if settings.seed is not None else 0))
        if center_init not in CENTER_INITS:
            raise ValueError(f"center_init must be one of {CENTER_INITS}, got {center_init!r}.")
        if progress_bar is None:
            progress_bar = not _in_ci()
        trainer_kwargs.setdefault("enable_progress_bar", progress_bar)
        trainer_kwargs.setdefault("log_every_n_steps", 1)
        trainer_kwargs.setdefault("enable_checkpointing", False)
        trainer_kwargs.setdefault("use_distributed_sampler", False)  # the splitter shards seeds by rank
        if trainer_kwargs.get("strategy") == "ddp":
            # heads that a likelihood or phase leaves unused (e.g. the ZINB dropout head under NB)
            trainer_kwargs["strategy"] = "ddp_find_unused_parameters_true"
        plan_kwargs = dict(plan_kwargs or {})
        plan_kwargs.setdefault("lr", lr)

        splitter = self._splitter(batch_size=batch_size, fanout=fanout, num_hops=num_hops, seed=seed)
        ckpt = _Checkpoints(checkpoint_dir)
        ckpt.check_matches(self.module, self.n_clusters_, clustering_options(self.module, anneal_lr, center_lr))
        resume_cluster = ckpt.exists("cluster")
        if not resume_cluster:
            # phase 1: pretraining (no clustering term); the getters leave the module in eval
            # mode, and a model trained again would otherwise pretrain without dropout
            self.module.train()
            torch.manual_seed(seed)
            plan = SiameseTrainingPlan(self.module, phase="pretrain", **plan_kwargs)
            self._run(plan, splitter, n_pre, accelerator, devices, trainer_kwargs, ckpt, "pretrain")
            # centre initialisation on the pretrained embedding
            z = self.get_latent_representation(batch_size=max(batch_size, 1024))
            k = self.n_clusters_
            if k is None:
                k, info = estimate_n_clusters(z, random_state=seed)
                self.auto_k_ = {"n_clusters": k, **info}
                logger.info("Estimated %d clusters without labels.", k)
            if center_init == "pca":
                centers = partition_centers(z, self._expression_kmeans(k, seed), k, seed)
            else:
                centers = kmeans_centers(z, k, seed)
            self.module.init_centers(torch.as_tensor(centers), torch.as_tensor(z))
        else:
            # resuming the clustering phase: centres (and k) come from its checkpoint
            k = ckpt.n_clusters("cluster")
            self.module.init_centers(torch.zeros(k, self.module.n_latent))
        self.n_clusters_ = k
        self.module.set_bank_limit(n_obs, batch_size)
        self.module.train()  # inference switched to eval mode; phase 2 trains with dropout again
        # phase 2: clustering, from a state that does not depend on how phase 1 ran (or resumed)
        torch.manual_seed(seed + 1)
        splitter.set_epoch(n_pre)
        plan = SiameseTrainingPlan(
            self.module,
            phase="cluster",
            cluster_weight=cluster_weight,
            ramp_epochs=ramp_epochs,
            tol=tol,
            n_obs=n_obs,
            reseed_empty=reseed_empty,
            anneal_lr=anneal_lr,
            center_lr=center_lr,
            **plan_kwargs,
        )
        try:
            self._run(
                plan, splitter, max_epochs - n_pre, accelerator, devices, trainer_kwargs, ckpt, "cluster"
            )
        except BaseException:
            self.is_trained_ = False  # no half-trained model behind the getters
            raise
        self.is_trained_ = True

    def _run(self, plan, splitter, epochs, accelerator, devices, trainer_kwargs, ckpt=None, phase=None):
        trainer_kwargs = dict(trainer_kwargs)
        if ckpt is not None and ckpt.dir is not None:
            trainer_kwargs.update(ckpt.trainer_kwargs(phase, trainer_kwargs.get("callbacks")))
        runner = self._train_runner_cls(
            self,
            training_plan=plan,
            data_splitter=splitter,
            max_epochs=epochs,
            accelerator=accelerator,
            devices=devices,
            **trainer_kwargs,
        )
        if ckpt is not None and ckpt.dir is not None:
            # scvi's Trainer adds its own SaveCheckpoint (monitoring a validation loss this model does
            # not have) whenever checkpointing is on; the per-phase ModelCheckpoint is the one wanted
            from scvi.train import SaveCheckpoint

            runner.trainer.callbacks[:] = [
                c for c in runner.trainer.callbacks if not isinstance(c, SaveCheckpoint)
            ]
        try:
            with quiet_internal_warnings(), torch_threads_from_env():
                runner()
        except SystemExit as e:
            # Lightning turns Ctrl-C into sys.exit(1) after a graceful stop; give callers the interrupt back
            if getattr(runner.trainer, "interrupted", False):
                raise KeyboardInterrupt from e
            raise

    def _expression_kmeans(self, k: int, seed: int) -> np.ndarray:
        """KMeans(k) labels of every cell on the first ``n_latent`` PCs of its (log-normalised) expression."""
        X = in_memory(self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))
        pcs = expression_pcs(
            X, is_counts=self.module.likelihood != "gaussian", n_pcs=self.module.n_latent, random_state=seed
        )
        return kmeans_fit(pcs, k, seed).predict(pcs)

    # ------------------------------------------------------------------------------ getters
    @torch.inference_mode()
    @quiet_internal_warnings()
    def _embed(self, adata=None, batch_size: int | None = None, soft: bool = False):
        self._check_if_trained(warn=False)
        from_view = getattr(adata, "is_view", False)
        adata = self._validate_anndata(adata)
        manager = self.get_anndata_manager(adata, required=True)
        try:
            return self._embed_registered(manager, batch_size, soft)
        finally:
            if from_view and manager.adata_uuid != self.adata_manager.adata_uuid:
                # the private copy of a view is not kept registered (nor its graphs cached)
                # (scvi's deregister_manager looks in the class store only, where a transferred
                # set-up is not kept, so both stores are cleared here)
                self._graph_cache.pop(manager.id, None)
                self._per_instance_manager_store.get(self.id, {}).pop(manager.adata_uuid, None)
                self._setup_adata_manager_store.pop(manager.adata_uuid, None)

    def _embed_registered(self, manager, batch_size: int | None, soft: bool):
        splitter = self._splitter(manager, batch_size=batch_size or 1024)
        self.module.eval()
        dev = self.device
        zs, qs = [], []
        for batch in splitter.inference_batches(batch_size=batch_size or 1024):
            batch = {k: v.to(dev) for k, v in batch.items()}
            z = self.module.inference(batch, augment=False)["z"]
            zs.append(z.cpu())
            if soft:
                qs.append(self.module.log_q(z).exp().cpu())
        z = torch.cat(zs).numpy()
        return (z, torch.cat(qs).numpy()) if soft else z

    def get_latent_representation(
        self, adata: AnnData | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Fused embedding of every cell, shape ``(n_obs, n_latent)``.

        Parameters
        ----------
        adata
            AnnData with the same genes (registered or transferable); defaults to the training data.
            New cells are registered in place (scvi-tools' fields, and a cell graph in
            ``obsp['siamese_connectivities']`` when the model built its own); a view is read
            from a copy and stays a view.
        batch_size
            Cells per inference batch.
        """
        return self._embed(adata, batch_size)

    def predict(self, adata: AnnData | None = None, soft: bool = False, batch_size: int | None = None):
        """Cluster assignments.

        Parameters
        ----------
        adata
            AnnData with the same genes; defaults to the training data. Registered as in
            :meth:`get_latent_representation`.
        soft
            Return soft assignments ``Q`` of shape ``(n_obs, n_clusters)`` (rows sum to 1)
            instead of hard labels of shape ``(n_obs,)``.
        batch_size
            Cells per inference batch.
        """
        if self.module.n_clusters == 0:
            raise RuntimeError("The model has no cluster centres yet; call train() first.")
        _, q = self._embed(adata, batch_size, soft=True)
        return q if soft else q.argmax(1)

    # ------------------------------------------------------------------------------ new data
    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True) -> AnnData:
        if getattr(adata, "is_view", False) and copy_if_view:
            # scvi-tools would turn the caller's view into an AnnData in place; read a copy instead
            adata = adata.copy()
        if adata is None or adata is self.adata:
            return super()._validate_anndata(adata, copy_if_view=copy_if_view)
        with restored_on_error(adata):
            if self.get_anndata_manager(adata) is None:
                self._prepare_new_adata(adata)
            else:
                self._check_genes(adata)
            return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def _prepare_new_adata(self, adata) -> None:
        """Check new cells against the training set-up and give them a cell graph (inductive use)."""
        if not isinstance(adata, AnnData):
            if type(adata).__name__ == "MuData":
                raise TypeError(
                    "The getters take new cells as an AnnData; a new MuData is not set up here. Save the model "
                    "and load it with the new data instead: `model.save(path)`, then "
                    "`SiameseCluModel.load(path, adata=mdata).predict()`."
                )
            raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
        self._check_genes(adata)
        registry = self.registry_
        args = registry["setup_args"]
        check_n_obs(adata.n_obs)
        check_finite(get_layer(adata, args.get("layer")), "the new data's expression matrix")
        graph_key = registry["field_registries"][SIAM_REGISTRY_KEYS.GRAPH_KEY]["data_registry"]["attr_key"]
        if graph_key not in adata.obsp:
            if graph_key == INPUT_GRAPH_KEY:
                raise KeyError(
                    "The model was fitted by tl.siamese_clu on a graph you gave (obsp= or neighbors_key=), which "
                    "the new data lack. Compute the same kind of graph on the new data and store it as "
                    f"adata.obsp[{INPUT_GRAPH_KEY!r}]."
                )
            if graph_key != DEFAULT_GRAPH_KEY:
                raise KeyError(
                    f"The model was set up with the graph adata.obsp[{graph_key!r}], which the new data lack. "
                    "Compute the same kind of graph on the new data first."
                )
            adata.obsp[DEFAULT_GRAPH_KEY] = build_graph(adata, **args)

    def _check_genes(self, adata) -> None:
        if not isinstance(adata, AnnData):  # MuData: the genes are those of the RNA modality
            rna_mod = (self.registry_["setup_args"].get("modalities") or {}).get("rna_layer")
            adata = adata.mod[rna_mod] if rna_mod in getattr(adata, "mod", {}) else adata
        _check_gene_names(self.registry_, adata)

    # ------------------------------------------------------------------------------ save / load
    def save(
        self,
        dir_path: str,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        **kwargs,
    ):
        """Save the model (weights, set-up and history) to ``dir_path``.

        The history is stored as plain lists so that :meth:`load` can read the file with
        ``torch.load(weights_only=True)``, which cannot execute code.

        Parameters
        ----------
        dir_path
            Folder to write (created if missing).
        prefix
            Prefix of the file names, for several models in one folder; pass the same to :meth:`load`.
        overwrite
            Replace the files of a model already saved there (otherwise an error is raised).
        save_anndata
            Also write the registered AnnData (``adata.h5ad``), so that :meth:`load` needs no
            ``adata``.
        **kwargs
            Passed to :meth:`anndata.AnnData.write` when ``save_anndata`` is true.
        """
        kept = {name: getattr(self, name) for name in ("history_", "registry_", "init_params_")}
        self.history_ = _history_to_plain(kept["history_"])
        self.registry_ = _plain(kept["registry_"])
        self.init_params_ = _plain(kept["init_params_"])
        try:
            super().save(dir_path, prefix=prefix, overwrite=overwrite, save_anndata=save_anndata, **kwargs)
        finally:
            for name, value in kept.items():
                setattr(self, name, value)

    @classmethod
    def load(
        cls,
        dir_path: str,
        adata: AnnData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
        backup_url: str | None = None,
        trusted: bool = False,
        **kwargs,
    ):
        """Load a saved model.

        The file is first read with ``torch.load(weights_only=True)``, which accepts only
        tensors, arrays and plain containers. A model file can otherwise run arbitrary code
        when unpickled: a file that needs more is refused unless ``trusted=True`` (use that only
        for files from a source you trust). Corrupt or truncated files, files of another model
        class and files from an incompatible scsiam version fail with a clear message.

        Parameters
        ----------
        dir_path
            Folder written by :meth:`save`.
        adata
            AnnData with the same genes (set up from the saved registry); default: the AnnData
            saved with ``save_anndata=True``.
        accelerator, device
            Where to load the model.
        prefix
            File-name prefix used by :meth:`save`.
        backup_url
            URL to download the file from when missing.
        trusted
            Allow files that need full unpickling.
        """
        import os

        path = os.path.join(dir_path, f"{prefix or ''}model.pt")
        if backup_url is None and not os.path.exists(path):
            raise FileNotFoundError(f"No saved model at {path!r}; pass the folder given to model.save().")
        if os.path.exists(path):
            saved = _read_model_file(path, trusted)
            _check_saved(saved, cls.__name__, path)
            if isinstance(adata, AnnData):
                # before scvi sets the data up, which would store a cell graph in it first
                _check_gene_names(saved["attr_dict"]["registry_"], adata)
        with restored_on_error(adata):
            model = super().load(
                dir_path,
                adata=adata,
                accelerator=accelerator,
                device=device,
                prefix=prefix,
                backup_url=backup_url,
                **kwargs,
            )
        model.history_ = _history_from_plain(model.history_)
        return model

    @property
    def history(self) -> dict[str, pd.DataFrame]:
        """Per-epoch metrics of both phases, as scvi's ``history``: one data frame per key, indexed by
        epoch (keys logged only while clustering, such as ``assignment_change``, start later)."""
        return self.history_


def build_graph(
    adata,
    *,
    layer=None,
    graph_key=None,
    spatial_key=None,
    batch_key=None,
    spatial_weight=0.5,
    graph_mode=None,
    protein_obsm_key=None,
    protein_weight=0.5,
    n_neighbors=15,
    n_pcs=50,
    n_spatial_neighbors=6,
    **_,
):
    """The cell graph that ``setup_anndata`` registers (given graph and/or built kNN, protein, spatial)."""
    X = get_layer(adata, layer)
    coords = None if spatial_key is None else np.asarray(adata.obsm[spatial_key])
    groups = None if (batch_key is None or spatial_key is None) else adata.obs[batch_key].to_numpy()
    protein = None if protein_obsm_key is None else np.asarray(adata.obsm[protein_obsm_key])
    return cell_graph(
        X,
        given=None if graph_key is None else adata.obsp[graph_key],
        coords=coords,
        groups=groups,
        protein=protein,
        graph_mode=graph_mode,
        spatial_weight=spatial_weight,
        protein_weight=protein_weight,
        n_neighbors=n_neighbors,
        n_pcs=n_pcs,
        n_spatial_neighbors=n_spatial_neighbors,
        is_counts=is_count_matrix(X),
    )


def _check_gene_names(registry: dict, adata) -> None:
    """Raise when ``adata``'s genes are not the training genes, in the training order."""
    expected = np.asarray(registry["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"]["column_names"])
    got = np.asarray(adata.var_names)
    if got.shape != expected.shape or not (got == expected).all():
        missing = np.setdiff1d(expected, got)
        hint = (
            f"{missing.size} training gene(s) are missing (e.g. {', '.join(map(str, missing[:5]))})"
            if missing.size
            else "the genes are the same but in another order or with extra genes"
        )
        raise ValueError(
            f"The new data's genes do not match the {expected.size} genes the model was trained on: {hint}. "
            "Subset and order them first: `adata = adata[:, model.adata.var_names].copy()`."
        )


def _reject_unknown(method: str, kwargs: dict) -> None:
    """Refuse keyword arguments a set-up method does not know, before anything is computed or written.

    The set-up methods keep scvi's ``**kwargs``, which scvi itself fills when it sets up data for
    a loaded model (``source_registry`` and its transfer options). Any other argument would only
    be rejected by scvi after the cell graph has been built and stored, naming one of its internals.
    """
    if kwargs and "source_registry" not in kwargs:
        hint = " scsiam is unsupervised and never reads labels." if "labels_key" in kwargs else ""
        raise TypeError(
            f"SiameseCluModel.{method}() got unexpected keyword argument(s) {sorted(kwargs)}.{hint} "
            f"See help(SiameseCluModel.{method}) for its arguments."
        )


class _Checkpoints:
    """Per-phase Lightning checkpoints in one folder (``pretrain.ckpt``, ``cluster.ckpt``)."""

    def __init__(self, directory: str | None):
        self.dir = directory
        self._states: dict[str, dict] = {}  # read once: checked, then sized for resuming
        if directory is not None:
            import os

            os.makedirs(directory, exist_ok=True)

    def path(self, phase: str) -> str:
        import os

        return os.path.join(self.dir, f"{phase}.ckpt")

    def exists(self, phase: str) -> bool:
        import os

        return self.dir is not None and os.path.exists(self.path(phase))

    def _checkpoint(self, phase: str) -> dict:
        if phase not in self._states:
            self._states[phase] = torch.load(self.path(phase), map_location="cpu", weights_only=False)
        return self._states[phase]

    def _state(self, phase: str) -> dict:
        return self._checkpoint(phase)["state_dict"]

    def n_clusters(self, phase: str) -> int:
        return int(self._state(phase)["module.centers"].shape[0])

    def check_matches(self, module, n_clusters: int | None, options: dict | None = None) -> None:
        """Raise if the checkpoint a run would resume from belongs to another model, k or options.

        Resuming from it would otherwise fail deep inside Lightning (other genes or sizes, or
        other optimised parameters) or, for another ``n_clusters`` or learning-rate schedule,
        silently continue the earlier run with its own. ``options`` are the clustering-phase
        settings the plan stores in its checkpoints.
        """
        phase = next((ph for ph in ("cluster", "pretrain") if self.exists(ph)), None)
        if phase is None:
            return
        state, own = self._state(phase), module.state_dict()
        for key, value in state.items():
            name = key.removeprefix("module.")
            if name in ("centers", "log_var", "log_pi", "init_prior", "ot_log_v") or name not in own:
                continue  # cluster-sized (set when clustering starts) or not a module entry
            if tuple(value.shape) != tuple(own[name].shape):
                raise ValueError(
                    f"checkpoint_dir {self.dir!r} holds a checkpoint ({phase}.ckpt) of a different model: "
                    f"{name} has shape {tuple(value.shape)} there and {tuple(own[name].shape)} here (other "
                    "genes, modalities or layer sizes). Pass an empty folder to start a new run."
                )
        if phase == "cluster" and n_clusters is not None and self.n_clusters(phase) != n_clusters:
            raise ValueError(
                f"checkpoint_dir {self.dir!r} holds a clustering checkpoint with {self.n_clusters(phase)} clusters, "
                f"but this model asks for n_clusters={n_clusters}. Resume with n_clusters={self.n_clusters(phase)}, "
                "or pass an empty folder to start a new run."
            )
        saved = self._checkpoint(phase).get("scsiam", {}).get("options") if phase == "cluster" else None
        if saved and options:
            differ = {k: (saved[k], v) for k, v in options.items() if k in saved and saved[k] != v}
            if differ:
                there = ", ".join(f"{k}={a!r}" for k, (a, _) in differ.items())
                here = ", ".join(f"{k}={b!r}" for k, (_, b) in differ.items())
                raise ValueError(
                    f"checkpoint_dir {self.dir!r} holds a clustering checkpoint trained with {there}, but this run "
                    f"asks for {here}. Resume with the same settings, or pass an empty folder to start a new run."
                )

    def trainer_kwargs(self, phase: str, callbacks=None) -> dict:
        from lightning.pytorch.callbacks import ModelCheckpoint

        cb = ModelCheckpoint(
            dirpath=self.dir,
            filename=phase,
            every_n_epochs=1,
            save_top_k=1,
            enable_version_counter=False,
            save_on_train_epoch_end=True,
        )
        # default_root_dir: keep Lightning's own log folder inside the checkpoint folder, not the cwd
        out = {
            "callbacks": [*(callbacks or []), cb],
            "enable_checkpointing": True,
            "default_root_dir": self.dir,
        }
        if self.exists(phase):
            out["ckpt_path"] = self.path(phase)
        return out


def default_schedule(n_obs: int) -> dict:
    """Epochs and batch size chosen from the number of cells: about 1500 optimiser steps, 20–60 epochs.

    Small data get more epochs, large data fewer (each epoch already holds many steps), so the
    total work grows about linearly with the number of cells.
    """
    batch_size = 256 if n_obs <= 50_000 else 512
    steps_per_epoch = max(1, math.ceil(n_obs / batch_size))
    max_epochs = int(np.clip(math.ceil(1500 / steps_per_epoch), 20, 60))
    if n_obs > 50_000:
        max_epochs = int(np.clip(math.ceil(1500 / steps_per_epoch), 6, 20))
    return {"batch_size": batch_size, "max_epochs": max_epochs}


CENTER_INITS = ("embedding", "pca")


@keep_torch_threads
def kmeans_fit(z: np.ndarray, k: int, seed: int, max_cells: int = 50_000):
    """scikit-learn KMeans of ``z`` (10 restarts, seeded), fitted on a sample above ``max_cells``."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    fit = z if z.shape[0] <= max_cells else z[rng.choice(z.shape[0], max_cells, replace=False)]
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(fit)


def kmeans_centers(z: np.ndarray, k: int, seed: int, max_cells: int = 50_000) -> np.ndarray:
    """KMeans centres of ``z`` (10 restarts, seeded); fitted on a sample above ``max_cells``."""
    return kmeans_fit(z, k, seed, max_cells).cluster_centers_.astype(np.float32)


def partition_centers(z: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Mean of ``z`` over the cells of each of the ``k`` groups in ``labels`` (integers ``0..k-1``).

    A group without cells gets a KMeans centre of ``z`` instead.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, z.shape[1]))
    np.add.at(sums, labels, z)
    centers = sums / np.maximum(counts, 1.0)[:, None]
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        centers[empty] = kmeans_centers(z, empty.size, seed)
    return centers.astype(np.float32)


def validate_adata(
    adata, *, layer=None, graph_key=None, spatial_key=None, batch_key=None, protein_obsm_key=None
) -> None:
    """Check an AnnData before anything is written to it."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
    check_n_obs(adata.n_obs)
    X = get_layer(adata, layer)
    check_finite(X, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
    if graph_key is not None and graph_key not in adata.obsp:
        raise KeyError(
            f"Graph {graph_key!r} is not in adata.obsp (keys: {list(adata.obsp.keys())}). "
            "Run `sc.pp.neighbors` / `squidpy.gr.spatial_neighbors` first, or leave it unset to build a kNN graph."
        )
    if spatial_key is not None and spatial_key not in adata.obsm:
        raise KeyError(
            f"Spatial coordinates {spatial_key!r} are not in adata.obsm (keys: {list(adata.obsm.keys())}). "
            "Pass the obsm key that holds the x/y coordinates (usually 'spatial')."
        )
    if batch_key is not None and batch_key not in adata.obs:
        raise KeyError(f"batch_key {batch_key!r} is not a column of adata.obs.")
    if batch_key is not None:
        check_batch_complete(adata.obs[batch_key], batch_key)
    if protein_obsm_key is not None:
        if protein_obsm_key not in adata.obsm:
            raise KeyError(
                f"Protein values {protein_obsm_key!r} are not in adata.obsm (keys: {list(adata.obsm.keys())}). "
                "Pass the obsm key holding the (CLR-normalised) protein matrix."
            )
        check_finite(np.asarray(adata.obsm[protein_obsm_key]), f"adata.obsm[{protein_obsm_key!r}]")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scsiam")
    except PackageNotFoundError:  # pragma: no cover
        return "0.0.0"


def _plain(obj):
    """Nested dict subclasses (defaultdict, ...) as plain dicts, which weights-only loading accepts."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _history_to_plain(history):
    if not history:
        return history
    return {
        k: {
            "__frame__": True,
            "index": [float(i) for i in v.index],
            "columns": [str(c) for c in v.columns],
            "values": np.asarray(v.to_numpy(), dtype=np.float64).tolist(),
        }
        if isinstance(v, pd.DataFrame)
        else v
        for k, v in history.items()
    }


def _history_from_plain(history):
    if not history:
        return history
    return {
        k: pd.DataFrame(v["values"], index=_epoch_index(v["index"]), columns=v["columns"])
        if isinstance(v, dict) and v.get("__frame__")
        else v
        for k, v in history.items()
    }


def _epoch_index(values) -> pd.Index:
    """The epochs of a saved history (stored as floats), as integers again when they are whole."""
    idx = np.asarray(values, dtype=np.float64)
    if idx.size and np.all(idx == np.round(idx)):
        idx = idx.astype(np.int64)
    return pd.Index(idx, name="epoch")


def _safe_globals() -> list:
    """numpy pieces that torch's weights-only unpickler needs for the arrays in a saved registry."""
    core = getattr(np, "_core", None) or np.core
    dtypes = {
        type(np.dtype(t)) for t in (object, np.int64, np.int32, np.float32, np.float64, np.bool_, "U1", "S1")
    }
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, bytes, *dtypes]


def _read_model_file(path: str, trusted: bool) -> dict:
    import pickle
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is corrupt or truncated and cannot be read (not a torch zip archive).")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trusted:
            raise ValueError(
                f"{path!r} holds Python objects beyond tensors, arrays and plain containers; unpickling them could "
                "run arbitrary code, so it was refused. Load it with trusted=True only if you trust its source."
            ) from e
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(
            f"{path!r} is corrupt or truncated and cannot be read ({type(e).__name__}: {str(e)[:200]})."
        ) from e


def _check_saved(saved, cls_name: str, path: str) -> None:
    if not isinstance(saved, dict) or not {"model_state_dict", "attr_dict"} <= set(saved):
        raise ValueError(f"{path!r} is not a saved scvi-tools/scsiam model (unexpected content).")
    attrs = saved["attr_dict"]
    name = attrs.get("registry_", {}).get("model_name")
    if name != cls_name:
        raise ValueError(
            f"{path!r} holds a {name!r} model, not a {cls_name}; load it with that class instead."
        )
    saved_version = str(attrs.get("scsiam_version_", "0.0.0"))
    if saved_version.split(".")[:1] != _package_version().split(".")[:1]:
        raise ValueError(
            f"{path!r} was saved by scsiam {saved_version}, which is incompatible with the installed "
            f"scsiam {_package_version()}; retrain the model or install scsiam {saved_version}."
        )


def _in_ci() -> bool:
    import os

    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
