"""The training phases behind ``SiameseCluModel.train``: gene phase, pretraining, centre
initialisation, clustering, and the start-or-end partition check."""

from __future__ import annotations

import copy
import hashlib

import torch
from scanpy import logging as logg
from scvi import REGISTRY_KEYS

from .._constants import SIAM_REGISTRY_KEYS
from .._utils import in_memory
from ..train._runner import run_phase
from ..train._schedule import GENE_BATCH_SIZE
from ._init import expression_kmeans, initial_centers
from ._partition import partition_scores


class PhaseTrainingMixin:
    """The phases of :meth:`~scsiam.SiameseCluModel.train`, on the model's module and registered data."""

    def _train_phases(self, ckpt, splitter, plan_kwargs, trainer_kwargs, args) -> None:
        """Pretraining (unless resuming the clustering phase), centre initialisation, clustering."""
        n_obs, batch_size, seed, n_pre = self.adata.n_obs, args["batch_size"], args["seed"], args["n_pre"]
        if not ckpt.exists("cluster"):
            if args["n_gene"] > 0 and not ckpt.exists("pretrain"):
                self._train_gene_phase(ckpt, plan_kwargs, trainer_kwargs, args)
            # phase 1: pretraining (no clustering term); the getters leave the module in eval
            # mode, and a model trained again would otherwise pretrain without dropout
            self.module.train()
            torch.manual_seed(seed)
            plan = self._training_plan_cls(self.module, phase="pretrain", **plan_kwargs)
            run_phase(self, plan, splitter, n_pre, trainer_kwargs, ckpt, "pretrain", args["progress"])
            self._init_clusters(batch_size, seed, args["center_init"])
            start = self._partition_snapshot(seed, args["partition_choice"])
        else:
            # resuming the clustering phase: centres (and k) come from its checkpoint
            self.n_clusters_ = ckpt.n_clusters("cluster")
            self.module.init_centers(torch.zeros(self.n_clusters_, self.module.n_latent))
            start = None  # the start of a resumed clustering phase is not kept: its end is returned
        self.module.set_bank_limit(n_obs, batch_size)
        self.module.train()  # inference switched to eval mode; phase 2 trains with dropout again
        # phase 2: clustering, from a state that does not depend on how phase 1 ran (or resumed)
        torch.manual_seed(seed + 1)
        splitter.set_epoch(n_pre)
        plan = self._training_plan_cls(
            self.module, phase="cluster", cluster_weight=args["cluster_weight"], ramp_epochs=args["ramp_epochs"],
            tol=args["tol"], n_obs=n_obs, reseed_empty=args["reseed_empty"], anneal_lr=args["anneal_lr"],
            center_lr=args["center_lr"], **plan_kwargs,
        )  # fmt: skip
        try:
            run_phase(
                self,
                plan,
                splitter,
                args["max_epochs"] - n_pre,
                trainer_kwargs,
                ckpt,
                "cluster",
                args["progress"],
            )
            self._choose_partition(start, seed, args["partition_choice"])
        except BaseException:
            self.is_trained_ = False  # no half-trained model behind the getters
            raise
        self.is_trained_ = True

    def _partition_snapshot(self, seed: int, choice: str):
        """The state and label-free scores of the partition the clustering phase starts from."""
        if choice == "final":
            return None
        graph = self.adata_manager.get_from_registry(SIAM_REGISTRY_KEYS.GRAPH_KEY)
        state = copy.deepcopy(self.module.state_dict())
        scores, self._partitions["start"] = partition_scores(self, graph, seed)
        return state, scores

    def _choose_partition(self, start, seed: int, choice: str) -> None:
        """Keep the end of the clustering phase, or go back to its start when that scores higher.

        ``partition_check_`` records both partitions' scores and which one the model holds.
        """
        if start is None:
            self.partition_check_ = {"chosen": "final", "rule": choice}
            return
        state, before = start
        graph = self.adata_manager.get_from_registry(SIAM_REGISTRY_KEYS.GRAPH_KEY)
        after, self._partitions["final"] = partition_scores(self, graph, seed)
        keep_start = before[choice] > after[choice]
        if keep_start:
            self.module.load_state_dict(state)
        self.partition_check_ = {
            "rule": choice,
            "chosen": "start" if keep_start else "final",
            **{f"start_{k}": v for k, v in before.items()},
            **{f"final_{k}": v for k, v in after.items()},
        }

    def _train_gene_phase(self, ckpt, plan_kwargs, trainer_kwargs, args) -> None:
        """The gene branch alone on minibatches of cells (no neighbourhoods), before the Siamese phases."""
        seed, n_gene = args["seed"], args["n_gene"]
        self.module.train()
        torch.manual_seed(seed + 2)
        cells = self._splitter(batch_size=GENE_BATCH_SIZE, fanout=0, num_hops=0, seed=seed + 2)
        warmup = args.get("kl_warmup_epochs") or n_gene
        plan = self._training_plan_cls(self.module, phase="gene", kl_warmup_epochs=warmup, **plan_kwargs)
        run_phase(self, plan, cells, n_gene, trainer_kwargs, ckpt, "gene", args["progress"])

    def _run_fingerprint(self, options: dict, **settings_) -> dict:
        """What ties checkpoints to this run: the cells and genes, k, and the training settings."""
        X = in_memory(self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))
        cells = hashlib.sha256("\n".join(map(str, self.adata.obs_names)).encode())
        cells.update(repr(float(X.sum())).encode())
        genes = hashlib.sha256("\n".join(map(str, self.adata.var_names)).encode())
        return {
            "n_obs": int(self.adata.n_obs), "cells": cells.hexdigest(), "genes": genes.hexdigest(),
            "n_clusters": self.n_clusters_, **options, **settings_,
        }  # fmt: skip

    def _init_clusters(self, batch_size: int, seed: int, center_init: str) -> None:
        """Centres (and, with ``n_clusters=None``, k) from the pretrained embedding."""
        z = self.get_latent_representation(batch_size=max(batch_size, 1024))

        def expression(k, seed):
            X = in_memory(self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))
            is_counts = self.module.likelihood != "gaussian"
            return expression_kmeans(X, k, seed, is_counts=is_counts, n_pcs=self.module.n_latent)

        logg.info(f"    initialising the cluster centres (KMeans, k={self.n_clusters_ or 'estimated'})")
        centers, k, auto_k = initial_centers(z, self.n_clusters_, seed, center_init, expression)
        if auto_k is not None:
            self.auto_k_ = auto_k
        self.module.init_centers(torch.as_tensor(centers), torch.as_tensor(z))
        self.n_clusters_ = k
