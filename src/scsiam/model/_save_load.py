"""Saving and loading without running code: plain registries, histories as dicts, weights-only reads."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import zipfile

import numpy as np
import pandas as pd
import torch

from .._utils import package_version

MODEL_FILE = "model.pt"


def plain(obj):
    """Nested dict subclasses (defaultdict, ...) as plain dicts, which weights-only loading accepts."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(plain(v) for v in obj)
    return obj


def history_to_plain(history):
    """Each data frame of a history as ``DataFrame.to_dict(orient="split")`` (plain lists of numbers)."""
    if not history:
        return history
    return {
        k: {"__frame__": True, **v.astype(np.float64).to_dict(orient="split")} if isinstance(v, pd.DataFrame) else v
        for k, v in history.items()
    }


def history_from_plain(history):
    """The data frames of a history saved by :func:`history_to_plain` (or by scsiam 0.1, ``"values"``)."""
    if not history:
        return history
    return {
        k: pd.DataFrame(v.get("data", v.get("values")), index=_epoch_index(v["index"]), columns=v["columns"])
        if isinstance(v, dict) and v.get("__frame__")
        else v
        for k, v in history.items()
    }


def _epoch_index(values) -> pd.Index:
    """The epochs of a saved history, as integers again when they are whole."""
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


def read_model_file(path: str, trusted: bool) -> dict:
    """Read a saved model with ``torch.load(weights_only=True)``; full unpickling only when ``trusted``."""
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


def check_saved(saved, cls_name: str, path: str) -> None:
    """Refuse content that is not a saved model of ``cls_name`` from a compatible scsiam version."""
    if not isinstance(saved, dict) or not {"model_state_dict", "attr_dict"} <= set(saved):
        raise ValueError(f"{path!r} is not a saved scvi-tools/scsiam model (unexpected content).")
    attrs = saved["attr_dict"]
    name = attrs.get("registry_", {}).get("model_name")
    if name != cls_name:
        raise ValueError(f"{path!r} holds a {name!r} model, not a {cls_name}; load it with that class instead.")
    saved_version = str(attrs.get("scsiam_version_", "0.0.0"))
    if saved_version.split(".")[:1] != package_version().split(".")[:1]:
        raise ValueError(
            f"{path!r} was saved by scsiam {saved_version}, which is incompatible with the installed "
            f"scsiam {package_version()}; retrain the model or install scsiam {saved_version}."
        )


@contextlib.contextmanager
def checked_copy(dir_path: str, prefix: str | None, cls_name: str, trusted: bool, backup_url: str | None = None):
    """A private folder holding a checked copy of the saved model, for scvi-tools to load from.

    The model file is copied (or downloaded from ``backup_url`` when missing) into a private
    temporary folder once, and that copy is read with the weights-only unpickler and checked;
    scvi-tools then reads the same copy, so a file replaced or served differently afterwards
    cannot run code. A saved AnnData/MuData next to it is linked in. Yields
    ``(folder, saved contents)``.
    """
    name = f"{prefix or ''}{MODEL_FILE}"
    path = os.path.join(dir_path, name)
    with tempfile.TemporaryDirectory(prefix="scsiam-load-") as tmp:
        private = os.path.join(tmp, name)
        if os.path.exists(path):
            shutil.copyfile(path, private)
        elif backup_url is not None:
            _download(backup_url, private)
        else:
            raise FileNotFoundError(f"No saved model at {path!r}; pass the folder given to model.save().")
        saved = read_model_file(private, trusted)
        check_saved(saved, cls_name, path)
        for data_file in ("adata.h5ad", "mdata.h5mu"):
            source = os.path.join(dir_path, f"{prefix or ''}{data_file}")
            if os.path.exists(source):
                os.symlink(os.path.abspath(source), os.path.join(tmp, f"{prefix or ''}{data_file}"))
        yield tmp, saved


def _download(url: str, dest: str) -> None:
    import urllib.request

    try:
        with urllib.request.urlopen(url) as response, open(dest, "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as e:
        raise ValueError(f"Could not download the model from backup_url={url!r} ({e}).") from e
