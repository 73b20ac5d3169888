"""The results CSV of the quality benchmark: one row per file x method x seed.

Concurrent runs of ``quality.py`` may write the same CSV: every read-modify-write holds a
:class:`filelock.FileLock` on ``.<csv name>.lock.tmp`` next to it, and the new file replaces the
old one atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

CSV_COLUMNS = [
    "file", "kind", "label_key", "n_obs", "n_vars", "true_k", "method", "seed", "status",
    "ARI", "NMI", "ACC", "seconds", "k_found", "k_model", "config", "train_kwargs", "extra",
    "error", "command", "machine", "timestamp",
]  # fmt: skip
STRING_COLUMNS = ["file", "kind", "label_key", "method", "status", "config", "train_kwargs", "extra",
                  "error", "command", "machine", "timestamp"]  # fmt: skip


def dumps(obj) -> str:
    """The JSON text the CSV stores (and ``--reuse`` compares): sorted keys, anything else as ``str``."""
    return json.dumps(obj, sort_keys=True, default=str)


def read_results(csv_path: Path) -> pd.DataFrame:
    if not csv_path.exists():
        return pd.DataFrame(columns=CSV_COLUMNS)
    df = pd.read_csv(csv_path)
    for col in CSV_COLUMNS:
        if col not in df:
            df[col] = np.nan
    for col in STRING_COLUMNS:
        df[col] = df[col].fillna("").astype(str)
    return df


def _lock(csv_path: Path):
    """Serialises read-modify-write of the CSV between concurrent runs of the benchmark."""
    from filelock import FileLock

    return FileLock(csv_path.with_name(f".{csv_path.name}.lock.tmp"))


def upsert_row(csv_path: Path, row: dict) -> None:
    """Write ``row`` into the CSV, in place of any row with the same file, method and seed."""
    with _lock(csv_path):
        df = read_results(csv_path)
        same = (df["file"] == row["file"]) & (df["method"] == row["method"]) & (df["seed"] == row["seed"])
        df = pd.concat([df[~same], pd.DataFrame([row])], ignore_index=True)[CSV_COLUMNS]
        df = df.sort_values(["file", "method", "seed"], kind="stable")
        tmp = csv_path.with_name(csv_path.name + ".tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, csv_path)


def done_before(df: pd.DataFrame, file: str, method: str, seed: int, config: str, train_kwargs: str) -> bool:
    """Whether ``df`` holds a successful row for these settings (``--reuse`` skips it)."""
    hit = df[(df["file"] == file) & (df["method"] == method) & (df["seed"] == seed)]
    return bool(
        ((hit["status"] == "ok") & (hit["config"] == config) & (hit["train_kwargs"] == train_kwargs)).any()
    )
