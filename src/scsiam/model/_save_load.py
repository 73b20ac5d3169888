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
        k: {"__frame__": True, **v.astype(np.float64).to_dict(orient="split")}
        if isinstance(v, pd.DataFrame)
        else v
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


def weights_digest(state_dict: dict) -> str:
    """SHA-256 of a state dict's tensors (names, dtypes, shapes and bytes), extra states included."""
    import hashlib

    h = hashlib.sha256()

    def feed(name: str, value) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                feed(f"{name}.{key}", value[key])
            return
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(value).encode())

    for key in sorted(state_dict):
        feed(key, state_dict[key])
    return h.hexdigest()


def _check_archive(path: str, shown: str) -> None:
    """Refuse a file that is no zip archive, or whose records fail their CRC check."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{shown!r} is corrupt or truncated and cannot be read (not a torch zip archive).")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{shown!r} is corrupt or truncated and cannot be read ({e}).") from e
    if bad is not None:
        raise ValueError(
            f"{shown!r} is corrupt: its record {bad!r} fails the checksum. Save the model again."
        )


def read_model_file(path: str, trusted: bool, shown: str | None = None) -> dict:
    """Read a saved model with ``torch.load(weights_only=True)``; full unpickling only when ``trusted``.

    The archive's CRC checks run first; ``shown`` is the path named in errors.
    """
    shown = shown or path
    _check_archive(path, shown)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trusted:
            raise ValueError(
                f"{shown!r} holds Python objects beyond tensors, arrays and plain containers; unpickling them could "
                "run arbitrary code, so it was refused. Load it with trusted=True only if you trust its source."
            ) from e
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(
            f"{shown!r} is corrupt or truncated and cannot be read ({type(e).__name__}: {str(e)[:200]})."
        ) from e


def check_saved(saved, cls_name: str, path: str) -> None:
    """Refuse content that is not a saved model of ``cls_name`` from a compatible scsiam version."""
    if not isinstance(saved, dict) or not {"model_state_dict", "attr_dict"} <= set(saved):
        raise ValueError(f"{path!r} is not a saved scvi-tools/scsiam model (unexpected content).")
    attrs = saved["attr_dict"]
    name = attrs.get("registry_", {}).get("model_name")
    if name != cls_name:
        raise ValueError(
            f"{path!r} holds a {name!r} model, not a {cls_name}; load it with that class instead."
        )
    digest = attrs.get("weights_sha256_")
    if digest is not None and digest != weights_digest(saved["model_state_dict"]):
        raise ValueError(
            f"{path!r} is corrupt: its weights do not match the checksum stored when it was saved."
        )
    saved_version = str(attrs.get("scsiam_version_", "0.0.0"))
    if saved_version.split(".")[:1] != package_version().split(".")[:1]:
        raise ValueError(
            f"{path!r} was saved by scsiam {saved_version}, which is incompatible with the installed "
            f"scsiam {package_version()}; retrain the model or install scsiam {saved_version}."
        )


@contextlib.contextmanager
def checked_copy(
    dir_path: str, prefix: str | None, cls_name: str, trusted: bool, backup_url: str | None = None
):
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
        saved = read_model_file(private, trusted, shown=path)
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


def publish(tmp_dir: str, dir_path: str) -> None:
    """Move the files written into ``tmp_dir`` into ``dir_path``, each replaced atomically, the model last.

    Each file is flushed to disk before it replaces the old one, so an interrupted save leaves
    either the previous model file or the new one, never a mix.
    """
    names = sorted(os.listdir(tmp_dir), key=lambda n: n.endswith(MODEL_FILE))
    for name in names:
        src = os.path.join(tmp_dir, name)
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        os.replace(src, os.path.join(dir_path, name))
    with contextlib.suppress(OSError):  # the folder entry itself (not available on every platform)
        fd = os.open(dir_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
