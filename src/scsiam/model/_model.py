"""SiameseCluModel: scSiameseClu as an scvi-tools model (the public API)."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings

import numpy as np
import pandas as pd
import rich.pretty  # noqa: F401 - scvi-tools' view_anndata_setup() calls rich.pretty without importing it
from anndata import AnnData
from scvi import REGISTRY_KEYS, settings
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from .._utils import (
    check_gene_names,
    check_keywords,
    check_n_clusters,
    check_n_obs,
    in_memory,
    is_count_matrix,
    package_version,
    quiet_libraries,
    restored_on_error,
)
from ..dataloaders import GraphDataSplitter
from ..module import SiameseModule
from ..module._vae import encoder_input_stats
from ..train import SiameseTrainingPlan
from ..train._checkpoints import PhaseCheckpoints
from ..train._plan import clustering_options
from ..train._progress import TrainingProgress
from ..train._runner import PhaseTrainRunner, show_progress, trainer_defaults
from ..train._schedule import resolve_gene_epochs, resolve_schedule
from . import _save_load as saving
from ._data import RegisteredDataMixin, training_genes
from ._init import CENTER_INITS
from ._options import OptionsMixin
from ._partition import PARTITION_CHOICES
from ._setup import SetupMixin
from ._training import PhaseTrainingMixin

logger = logging.getLogger(__name__)


class SiameseCluModel(
    SetupMixin,
    RegisteredDataMixin,
    OptionsMixin,
    PhaseTrainingMixin,
    UnsupervisedTrainingMixin,
    BaseModelClass,
):
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
    _train_runner_cls = PhaseTrainRunner

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
        likelihood = _resolve_likelihood(likelihood, is_count_matrix(X))
        check_keywords(module_kwargs, self.model_options(), "SiameseCluModel()")
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
        if self.module.backbone == "vae" and self.module.input_scale == "scaled":
            stats = encoder_input_stats(X, target_sum, counts=likelihood != "gaussian")
            self.module.gene_encoder.set_gene_stats(*stats)
        self._graph_cache = {}
        self._ppr_params = {"alpha": ppr_alpha, "top_k": ppr_top_k}
        self.n_clusters_ = k
        self.auto_k_ = None
        self.partition_check_ = None
        self._partitions = {}  # labels of the clustering phase's start and end (not saved)
        self.scsiam_version_ = package_version()
        self._model_summary_string = (
            f"SiameseCluModel: n_latent={n_latent}, likelihood={likelihood}, "
            f"n_clusters={'auto' if k is None else k}, graph edges={self.summary_stats.n_edges}"
            + ("" if protein is None else f", proteins={protein.shape[1]}")
        )
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        n_epochs_pretrain: int | None = None,
        n_epochs_gene: int | None = None,
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
        partition_choice: str = "final",
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
        n_epochs_gene
            Epochs of the gene phase that comes before both: the gene branch alone, trained as a
            VAE (``backbone="vae"``) on minibatches of cells without their neighbourhoods or a
            second view, so that each step is cheap. Default: with ``backbone="vae"`` scVI's rule
            (:func:`~scsiam.train.default_gene_epochs`), otherwise 0. They are not part of
            ``max_epochs``.
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
            the largest cluster (off by default; see the benchmarks page).
        anneal_lr
            Lower the learning rate along a half cosine to 0 during the clustering phase, so the
            clusters settle before the final epoch (otherwise ``lr`` stays constant; off by
            default, see the benchmarks page).
        center_lr
            Learning rate of the cluster centres in the clustering phase, when they are learned
            by gradient (``None``: ``lr``).
        center_init
            Where the clustering phase starts. ``"embedding"``: KMeans(k) on the pretrained
            embedding. ``"pca"``: KMeans(k) on the first ``n_latent`` principal components of
            the expression the encoder reads (log-normalised counts, or the values as given
            with the gaussian likelihood; the RNA only for multimodal data), each centre then
            being the mean pretrained embedding of its cluster.
        partition_choice
            Which partition the trained model returns. ``"final"``: the end of the clustering
            phase. ``"modularity"``: the end, unless the partition the phase started from has
            the higher modularity on the registered cell graph, in which case the model goes
            back to that start (the network and centres as they were when the phase began);
            both partitions' modularity and view agreement (ARI between the assignments of two
            augmented views) are then kept in ``partition_check_``.
        accelerator, devices
            Lightning accelerator and devices; ``strategy="ddp"`` etc. pass through ``trainer_kwargs``.
        progress_bar
            Show one progress bar over all phases (default: on, except when the environment
            variable ``CI`` is set). Lightning's own bar and notes stay off; scanpy's
            ``settings.verbosity = "debug"`` shows the notes.
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
        check_keywords(trainer_kwargs, self.train_options(), "SiameseCluModel.train()")
        n_obs = self.adata.n_obs
        max_epochs, n_pre, batch_size, seed = resolve_schedule(
            n_obs, max_epochs, n_epochs_pretrain, batch_size, seed
        )
        n_gene = resolve_gene_epochs(n_obs, n_epochs_gene, self.module.backbone)
        if partition_choice not in PARTITION_CHOICES:
            raise ValueError(
                f"partition_choice must be one of {PARTITION_CHOICES}, got {partition_choice!r}."
            )
        if center_init not in CENTER_INITS:
            raise ValueError(f"center_init must be one of {CENTER_INITS}, got {center_init!r}.")
        trainer_kwargs = trainer_defaults(trainer_kwargs, accelerator, devices)
        plan_kwargs = {"lr": lr, **dict(plan_kwargs or {})}
        splitter = self._splitter(batch_size=batch_size, fanout=fanout, num_hops=num_hops, seed=seed)
        ckpt = PhaseCheckpoints(checkpoint_dir)
        progress = TrainingProgress(n_gene + max_epochs, enabled=show_progress(progress_bar))
        try:
            options = clustering_options(self.module, anneal_lr, center_lr)
            ckpt.check_matches(self.module, self.n_clusters_, options)
            if ckpt.dir is not None:
                ckpt.check_run(
                    self._run_fingerprint(
                        options, seed=seed, batch_size=batch_size, n_pre=n_pre, n_gene=n_gene
                    )
                )
            phase_args = {
                "max_epochs": max_epochs, "n_pre": n_pre, "n_gene": n_gene, "batch_size": batch_size, "seed": seed,
                "center_init": center_init, "cluster_weight": cluster_weight, "ramp_epochs": ramp_epochs,
                "tol": tol, "reseed_empty": reseed_empty, "partition_choice": partition_choice, "anneal_lr": anneal_lr, "center_lr": center_lr,
                "progress": progress,
            }  # fmt: skip
            self._train_phases(ckpt, splitter, plan_kwargs, trainer_kwargs, phase_args)
        finally:
            progress.close()
            ckpt.close()

    # ------------------------------------------------------------------------------ getters
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
        ``torch.load(weights_only=True)``, which cannot execute code, together with a SHA-256 of
        the weights that :meth:`load` checks. The files are written to a temporary folder and
        moved into place one by one (the model file last), so an interrupted save leaves the
        previous model file or the new one, never a broken one.

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
        if os.path.exists(dir_path) and not overwrite:
            raise ValueError(
                f"{dir_path!r} already exists; pass overwrite=True to replace the model saved there."
            )
        os.makedirs(dir_path, exist_ok=True)
        kept = {name: getattr(self, name) for name in ("history_", "registry_", "init_params_")}
        self.history_ = saving.history_to_plain(kept["history_"])
        self.registry_ = saving.plain(kept["registry_"])
        self.init_params_ = saving.plain(kept["init_params_"])
        self.weights_sha256_ = saving.weights_digest(self.module.state_dict())
        try:
            # written into a private folder next to the target, then moved into place file by file
            with tempfile.TemporaryDirectory(dir=dir_path, prefix=".scsiam-save-") as tmp:
                super().save(tmp, prefix=prefix, overwrite=True, save_anndata=save_anndata, **kwargs)
                saving.publish(tmp, dir_path)
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
        with saving.checked_copy(dir_path, prefix, cls.__name__, trusted, backup_url) as (private_dir, saved):
            if isinstance(adata, AnnData):
                # before scvi sets the data up, which would store a cell graph in it first
                check_gene_names(training_genes(saved["attr_dict"]["registry_"]), adata)
            # quiet: scvi-tools' note that the (private, checked) file was "already downloaded"
            with restored_on_error(adata), quiet_libraries():
                model = super().load(
                    private_dir, adata=adata, accelerator=accelerator, device=device, prefix=prefix, **kwargs
                )
        model.history_ = saving.history_from_plain(model.history_)
        return model

    @property
    def history(self) -> dict[str, pd.DataFrame]:
        """Per-epoch metrics of both phases, as scvi's ``history``: one data frame per key, indexed by
        epoch (keys logged only while clustering, such as ``assignment_change``, start later)."""
        return self.history_


def _resolve_likelihood(likelihood: str, counts: bool) -> str:
    """``"auto"`` as the count likelihood for counts, gaussian otherwise (with a warning); checks the choice."""
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
    return likelihood
