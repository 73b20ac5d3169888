"""Per-phase Lightning checkpoints in one folder, checked against the model before a run resumes."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import zipfile

import torch

#: state entries sized by the number of clusters (set when clustering starts), not by the network
_CLUSTER_SIZED = ("centers", "log_var", "log_pi", "init_prior", "kernel_scale", "ot_log_v")


def _is_cluster_sized(name: str) -> bool:
    return name.startswith("cluster_head.") or name in _CLUSTER_SIZED


class PhaseCheckpoints:
    """Per-phase Lightning checkpoints in one folder (``pretrain.ckpt``, ``cluster.ckpt``).

    ``directory=None`` means no checkpoints: every query answers "none". A checkpoint is read
    once, from a private copy, with the weights-only unpickler; Lightning resumes from that same
    copy, so a file replaced after the check cannot run code. ``run.json`` next to the
    checkpoints records which run they belong to (cells, genes, k, settings), and a run that
    differs is refused before training.
    """

    RUN_FILE = "run.json"

    def __init__(self, directory: str | None):
        self.dir = directory
        self._states: dict[str, dict] = {}  # read once: checked, then sized for resuming
        self._private = None
        if directory is not None:
            os.makedirs(directory, exist_ok=True)

    def close(self) -> None:
        """Remove the private copies of the checkpoints read."""
        if self._private is not None:
            self._private.cleanup()
            self._private = None

    def _private_path(self, phase: str) -> str:
        if self._private is None:
            self._private = tempfile.TemporaryDirectory(prefix="scsiam-ckpt-")
        return os.path.join(self._private.name, f"{phase}.ckpt")

    def path(self, phase: str) -> str:
        return os.path.join(self.dir, f"{phase}.ckpt")

    def exists(self, phase: str) -> bool:
        return self.dir is not None and os.path.exists(self.path(phase))

    def _checkpoint(self, phase: str) -> dict:
        if phase not in self._states:
            private = self._private_path(phase)
            shutil.copyfile(self.path(phase), private)
            self._states[phase] = _read_checkpoint(private, self.path(phase))
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
        phase = next((ph for ph in ("cluster", "pretrain", "gene") if self.exists(ph)), None)
        if phase is None:
            return
        self._checkpoint(phase)
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
            self._checkpoint(phase)  # checked, and copied privately: Lightning resumes from the copy
            out["ckpt_path"] = self._private_path(phase)
        return out

    def check_run(self, fingerprint: dict) -> None:
        """Refuse checkpoints of another run; record ``fingerprint`` for a new one.

        ``fingerprint`` holds plain values that identify the run (cells, genes, k, settings).
        """
        if self.dir is None:
            return
        run_file = os.path.join(self.dir, self.RUN_FILE)
        has_checkpoints = self.exists("pretrain") or self.exists("cluster")
        if has_checkpoints and os.path.exists(run_file):
            try:
                with open(run_file) as f:
                    recorded = json.load(f)
            except (OSError, ValueError) as e:
                raise ValueError(
                    f"{run_file!r} is unreadable ({e}); pass an empty folder to start a new run."
                ) from e
            differ = sorted(k for k in fingerprint if k in recorded and recorded[k] != fingerprint[k])
            if differ:
                raise ValueError(
                    f"checkpoint_dir {self.dir!r} holds the checkpoints of another run: its {', '.join(differ)} "
                    "differ from this one's. Resume with the same data and settings, or pass an empty folder."
                )
            return
        tmp = run_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(fingerprint, f)
        os.replace(tmp, run_file)


def _read_checkpoint(path: str, shown: str) -> dict:
    """A Lightning checkpoint read with the weights-only unpickler; errors name the file ``shown``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{shown!r} holds Python objects beyond tensors and plain containers; unpickling them could run "
            "arbitrary code, so it was refused. Pass an empty checkpoint_dir to start a new run."
        ) from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(
            f"{shown!r} is corrupt or truncated ({type(e).__name__}: {str(e)[:200]}); delete it to start that "
            "phase again, or pass an empty checkpoint_dir."
        ) from e
