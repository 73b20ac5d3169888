"""Running one training phase through scvi-tools' runner, with a history that spans both phases."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scvi.train import TrainRunner

from .._utils import in_ci, quiet_internal_warnings, quiet_libraries, torch_threads_from_env


class PhaseTrainRunner(TrainRunner):
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


def run_phase(
    model,
    plan,
    splitter,
    epochs: int,
    trainer_kwargs: dict,
    ckpt=None,
    phase: str | None = None,
    progress=None,
):
    """Train ``plan`` on ``splitter`` for ``epochs`` epochs with the model's runner (checkpointed with ``ckpt``).

    ``progress`` (a :class:`~scsiam.train.TrainingProgress`) is the bar shared by the phases.
    """
    trainer_kwargs = dict(trainer_kwargs)
    if progress is not None:
        progress.start_phase(phase)
        trainer_kwargs["callbacks"] = [*(trainer_kwargs.get("callbacks") or []), progress]
    checkpointed = ckpt is not None and ckpt.dir is not None
    if checkpointed:
        trainer_kwargs.update(ckpt.trainer_kwargs(phase, trainer_kwargs.get("callbacks")))
    # one block: scvi-tools' Trainer prints its device notes when built, Lightning when it runs
    with quiet_internal_warnings(), quiet_libraries(), torch_threads_from_env():
        runner = model._train_runner_cls(
            model, training_plan=plan, data_splitter=splitter, max_epochs=epochs, **trainer_kwargs
        )
        if checkpointed:
            # scvi's Trainer adds its own SaveCheckpoint (monitoring a validation loss this model does
            # not have) whenever checkpointing is on; the per-phase ModelCheckpoint is the one wanted
            from scvi.train import SaveCheckpoint

            runner.trainer.callbacks[:] = [
                c for c in runner.trainer.callbacks if not isinstance(c, SaveCheckpoint)
            ]
        try:
            runner()
        except SystemExit as e:
            # Lightning turns Ctrl-C into sys.exit(1) after a graceful stop; give callers the interrupt back
            if getattr(runner.trainer, "interrupted", False):
                raise KeyboardInterrupt from e
            raise


def show_progress(progress_bar: bool | None) -> bool:
    """Whether ``train`` draws its progress bar (``None``: yes, unless the variable ``CI`` is set)."""
    return (not in_ci()) if progress_bar is None else bool(progress_bar)


def trainer_defaults(trainer_kwargs: dict, accelerator, devices) -> dict:
    """The Lightning trainer arguments of every phase.

    Lightning's own bar is off (one per ``fit``, restarting at every phase): ``train`` draws one
    :class:`~scsiam.train.TrainingProgress` bar over all phases instead.
    """
    out = {"accelerator": accelerator, "devices": devices, **trainer_kwargs}
    out.setdefault("enable_progress_bar", False)
    out.setdefault("enable_model_summary", False)
    out.setdefault("log_every_n_steps", 1)
    out.setdefault("enable_checkpointing", False)
    out.setdefault("use_distributed_sampler", False)  # the splitter shards seeds by rank
    if out.get("strategy") == "ddp":
        # heads that a likelihood or phase leaves unused (e.g. the ZINB dropout head under NB)
        out["strategy"] = "ddp_find_unused_parameters_true"
    return out
