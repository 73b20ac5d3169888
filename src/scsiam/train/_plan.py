"""Training plan: one phase per plan (pretraining or clustering), label-free stopping."""

from __future__ import annotations

import numpy as np
import torch
from scvi.train import TrainingPlan

# entries of the clustering head's extra state that checkpoints of earlier versions kept in "scsiam"
PHASES = ("gene", "pretrain", "cluster")
_HEAD_STATE = ("bank", "bank_fill", "bank_ptr", "ot_log_v", "ot_steps", "center_mass")


class SiameseTrainingPlan(TrainingPlan):
    """Lightning plan for :class:`~scsiam.module.SiameseModule`.

    Parameters
    ----------
    module
        The network.
    phase
        ``"gene"`` (the gene branch alone on the seed cells, as a VAE or autoencoder: no graph,
        no second view, the KL weight warmed up linearly over ``kl_warmup_epochs``),
        ``"pretrain"`` (every loss but the clustering term) or ``"cluster"`` (all terms, with the
        clustering weight ramped linearly to ``cluster_weight`` over ``ramp_epochs``).
    cluster_weight
        Final weight λ of the clustering loss.
    ramp_epochs
        Epochs of the λ ramp.
    tol
        Label-free stopping: in the clustering phase, training stops once fewer than this
        fraction of cells changed their hard assignment during an epoch (after the ramp).
    n_obs
        Number of cells (to track assignments between epochs).
    reseed_empty
        In the clustering phase, move the centre of a cluster that held no cell during an epoch
        into the largest cluster (see :meth:`~scsiam.module.SiameseModule.reseed_empty_centers`),
        so that more of the clusters asked for are kept.
    center_lr
        Learning rate of the cluster centres in the clustering phase, when they are learned by
        gradient (``None``: the plan's ``lr``).
    anneal_lr
        In the clustering phase, lower the learning rate along a half cosine from ``lr`` to 0
        over the phase's steps, so that the final clusters come from a settled embedding rather
        than from the last of many large steps.
    kl_warmup_epochs
        Epochs over which the KL weight of the ``"gene"`` phase rises from 0 to 1 (scVI's
        warm-up); the later phases use the full weight.
    **kwargs
        Optimiser settings of :class:`scvi.train.TrainingPlan` (``lr``, ``weight_decay``, ...).
    """

    def __init__(
        self,
        module,
        *,
        phase: str = "pretrain",
        cluster_weight: float = 1.0,
        ramp_epochs: int = 5,
        tol: float = 1e-3,
        n_obs: int = 0,
        reseed_empty: bool = False,
        center_lr: float | None = None,
        anneal_lr: bool = False,
        kl_warmup_epochs: int = 1,
        **kwargs,
    ):
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(map(repr, PHASES))}, got {phase!r}.")
        module.set_phase(phase)
        super().__init__(module, **kwargs)
        self.phase = phase
        self.cluster_weight = float(cluster_weight)
        self.ramp_epochs = max(int(ramp_epochs), 1)
        self.tol = float(tol)
        self.reseed_empty = bool(reseed_empty)
        self.anneal_lr = bool(anneal_lr)
        self.center_lr = None if center_lr is None else float(center_lr)
        self.kl_warmup_epochs = max(int(kl_warmup_epochs), 1)
        self._assign = np.full(n_obs, -1, dtype=np.int64) if phase == "cluster" else None
        self._prev = None

    @property
    def current_cluster_weight(self) -> float:
        if self.phase != "cluster":
            return 0.0
        return self.cluster_weight * min(1.0, (self.current_epoch + 1) / self.ramp_epochs)

    @property
    def current_kl_scale(self) -> float:
        if self.phase != "gene":
            return 1.0
        return min(1.0, self.current_epoch / self.kl_warmup_epochs)

    def training_step(self, batch, batch_idx):
        lam = self.current_cluster_weight
        gene = self.phase == "gene"
        inference_outputs, _, out = self.forward(
            batch,
            inference_kwargs={"augment": not gene, "gene_only": gene},
            loss_kwargs={"cluster_weight": lam, "kl_scale": self.current_kl_scale},
        )
        n_seed = int(batch["n_seed"])
        check_loss_finite(out)
        if self._assign is not None and self.module.n_clusters > 0:
            with torch.no_grad():
                hard = self.module.log_q(inference_outputs["z"].detach()).argmax(1).cpu().numpy()
            self._assign[batch["ind_x"][:n_seed].cpu().numpy()] = hard
        # not scvi's compute_and_log_metrics: it also logs the ELBO collection, which for this
        # loss is "elbo_train" and "reconstruction_loss_train" (both the "loss_reconstruction_train"
        # below again) and "kl_local_train" / "kl_global_train" (always 0)
        self.log("train_loss", out.loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n_seed)
        for k, v in out.extra_metrics.items():
            self.log(f"{k}_train", v, on_step=False, on_epoch=True, batch_size=n_seed)
        self.log("cluster_weight", lam, on_step=False, on_epoch=True, batch_size=n_seed)
        return out.loss

    def configure_optimizers(self):
        config = super().configure_optimizers()
        centers = self.module.cluster_head.centers
        if self.phase == "cluster" and self.center_lr is not None and centers.requires_grad:
            # the centres in a group of their own, at their own learning rate
            opt = config["optimizer"]
            for group in opt.param_groups:
                group["params"] = [p for p in group["params"] if p is not centers]
            opt.add_param_group({"params": [centers], "lr": self.center_lr})
        if self.phase != "cluster" or not self.anneal_lr:
            return config
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(config["optimizer"], T_max=total, eta_min=0.0)
        config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
        return config

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.module.update_centers()  # after the optimiser step (no-op outside the "ema" OT head)

    def on_train_epoch_end(self):
        if self._assign is None:
            return
        cur = self._assign.copy()
        if self.reseed_empty:
            self._reseed(cur)
        if self._prev is not None:
            seen = (cur >= 0) & (self._prev >= 0)
            changed = float((cur[seen] != self._prev[seen]).mean()) if seen.any() else 1.0
            # under DDP every rank tracks its own share of cells: agree on the mean
            changed = float(
                self.trainer.strategy.reduce(torch.tensor(changed, device=self.device), reduce_op="mean")
            )
            self.log("assignment_change", changed, on_epoch=True)
            if self.current_epoch + 1 >= self.ramp_epochs and changed < self.tol:
                self.trainer.should_stop = True
        self._prev = cur

    def _reseed(self, assign: np.ndarray) -> None:
        m, strategy = self.module.cluster_head, self.trainer.strategy
        k = m.n_clusters
        counts = torch.as_tensor(np.bincount(assign[assign >= 0], minlength=k)[:k], device=self.device)
        # under DDP every rank holds its own share of cells and of the OT memory: sum the counts,
        # and keep rank 0's centres
        counts = strategy.reduce(counts.float(), reduce_op="sum")
        before = m.centers.detach().clone()
        self.module.reseed_empty_centers(counts)  # the module's entry point
        for param in (m.centers, m.log_var, m.log_pi):
            param.data.copy_(strategy.broadcast(param.data, src=0))
        moved = (m.centers.detach() != before).any(1).nonzero().flatten()
        if moved.numel():
            # forget the optimiser's momentum of the moved centres, which pointed where they came from
            opt = self.optimizers()
            state = getattr(opt, "optimizer", opt).state.get(m.centers, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][moved] = 0.0
        self.log("clusters_reseeded", float(moved.numel()), on_epoch=True)

    # ------------------------------------------------------------------ checkpoint and resume
    def on_save_checkpoint(self, checkpoint) -> None:
        """Store what a resumed run needs besides the state dict: RNG, sampler epoch, options, assignments.

        The transient state of the clustering head (its OT memory and potentials) is part of
        the module's state dict (:meth:`~scsiam.module.ClusterHead.get_extra_state`).
        """
        checkpoint["scsiam"] = {
            "torch_rng": torch.get_rng_state(),
            "sampler_epoch": getattr(self.trainer.datamodule, "epoch", None),
            "options": clustering_options(self.module, self.anneal_lr, self.center_lr),
            "assign": None if self._assign is None else torch.from_numpy(self._assign.copy()),
            "prev": None if self._prev is None else torch.from_numpy(self._prev.copy()),
        }

    def on_load_checkpoint(self, checkpoint) -> None:
        state = checkpoint.get("scsiam")
        if state is None:
            return
        torch.set_rng_state(state["torch_rng"])
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and state["sampler_epoch"] is not None:
            dm.set_epoch(state["sampler_epoch"])
        if "bank" in state:  # written before the head's state was part of the state dict
            extra = {k: v for k, v in state.items() if k in _HEAD_STATE}
            checkpoint["state_dict"].setdefault("module.cluster_head._extra_state", extra)
        if state["assign"] is not None:
            self._assign = state["assign"].numpy().copy()
        self._prev = None if state["prev"] is None else state["prev"].numpy().copy()

    def validation_step(self, batch, batch_idx):  # no validation split for a transductive graph model
        return None


def clustering_options(module, anneal_lr: bool, center_lr: float | None = None) -> dict:
    """Settings a resumed clustering phase must share with the checkpoint it resumes from.

    They decide which parameters the optimiser holds and whether a learning-rate scheduler exists.
    """
    return {
        "clustering_head": module.clustering_head,
        "center_update": module.center_update,
        "anneal_lr": bool(anneal_lr),
        "center_lr": None if center_lr is None else float(center_lr),
    }


def check_loss_finite(out) -> None:
    """Stop with a clear error naming the loss term that became NaN or inf."""
    if torch.isfinite(out.loss):
        return
    bad = [k.removeprefix("loss_") for k, v in out.extra_metrics.items() if not torch.isfinite(v)]
    raise FloatingPointError(
        f"Training diverged: the loss became non-finite (terms: {', '.join(bad) or 'total'}). "
        "Try a lower learning rate (train(lr=...)), likelihood='gaussian' for non-count data, "
        "or check the input for extreme values."
    )
