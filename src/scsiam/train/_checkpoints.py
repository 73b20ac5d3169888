"""Per-phase Lightning checkpoints in one folder, checked against the model before a run resumes."""

from __future__ import annotations

import os

import torch

#: state entries sized by the number of clusters (set when clustering starts), not by the network
_CLUSTER_SIZED = ("centers", "log_var", "log_pi", "init_prior", "kernel_scale", "ot_log_v")


def _is_cluster_sized(name: str) -> bool:
    return name.startswith("cluster_head.") or name in _CLUSTER_SIZED


class PhaseCheckpoints:
    """Per-phase Lightning checkpoints in one folder (``pretrain.ckpt``, ``cluster.ckpt``).

    ``directory=None`` means no checkpoints: every query answers "none".
    """

    def __init__(self, directory: str | None):
        self.dir = directory
        self._states: dict[str, dict] = {}  # read once: checked, then sized for resuming
        if directory is not None:
            os.makedirs(directory, exist_ok=True)

    def path(self, phase: str) -> str:
        return os.path.join(self.dir, f"{phase}.ckpt")

    def exists(self, phase: str) -> bool:
        return self.dir is not None and os.path.exists(self.path(phase))

    def _checkpoint(self, phase: str) -> dict:
        if phase not in self._states:
            self._states[phase] = torch.load(self.path(phase), map_location="cpu", weights_only=False)
        return self._states[phase]

    def _state(self, phase: str) -> dict:
        return self._checkpoint(phase)["state_dict"]

    def n_clusters(self, phase: str) -> int:
        state = self._state(phase)
        key = "module.cluster_head.centers" if "module.cluster_head.centers" in state else "module.centers"
        return int(state[key].shape[0])

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
        self._check_shapes(phase, module.state_dict())
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

    def _check_shapes(self, phase: str, own: dict) -> None:
        for key, value in self._state(phase).items():
            name = key.removeprefix("module.")
            if _is_cluster_sized(name) or name not in own or not isinstance(value, torch.Tensor):
                continue  # cluster-sized, extra state, or not a module entry
            if tuple(value.shape) != tuple(own[name].shape):
                raise ValueError(
                    f"checkpoint_dir {self.dir!r} holds a checkpoint ({phase}.ckpt) of a different model: "
                    f"{name} has shape {tuple(value.shape)} there and {tuple(own[name].shape)} here (other "
                    "genes, modalities or layer sizes). Pass an empty folder to start a new run."
                )

    def trainer_kwargs(self, phase: str, callbacks=None) -> dict:
        """Trainer arguments that write this phase's checkpoint after every epoch (and resume from it)."""
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
