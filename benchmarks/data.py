"""Labelled ``.h5ad`` files: finding them, and reading them with their labels set aside for scoring."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
LABEL_KEYS = ("domain", "cell_type")  # first present wins
PROTEIN_KEY = "protein_clr"  # obsm key of the CLR protein values (CITE-seq files)


@dataclass
class Dataset:
    name: str
    path: Path
    adata: Any  # stripped AnnData: no obs columns
    labels: np.ndarray
    label_key: str
    spatial: bool

    @property
    def k(self) -> int:
        return int(pd.Series(self.labels).nunique())

    @property
    def kind(self) -> str:
        return "spatial" if self.spatial else "scRNA"


def find_files(data_dir: Path, only: list[str] | None) -> list[Path]:
    files = sorted(Path(data_dir).glob("*.h5ad"))
    if only:
        wanted = {Path(f).name.removesuffix(".h5ad") for f in only}
        missing = wanted - {f.stem for f in files}
        if missing:
            raise SystemExit(f"--files not found in {data_dir}: {sorted(missing)}")
        by_stem = {f.stem: f for f in files}
        files = [by_stem[s] for s in dict.fromkeys(Path(f).name.removesuffix(".h5ad") for f in only)]
    return files  # alphabetical, or in the order given to --files


def probe_parser(doc: str, files: list[str] | None, seeds: list[int]) -> argparse.ArgumentParser:
    """Command line shared by the probe scripts: ``--data``, ``--files`` (stems) and ``--seeds``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--files", nargs="*", default=files)
    p.add_argument("--seeds", nargs="*", type=int, default=seeds)
    return p


def load_dataset(path: Path) -> Dataset | None:
    """Read a file; ``None`` when it has no label column."""
    import anndata as ad

    adata = ad.read_h5ad(path)
    label_key = next((key for key in LABEL_KEYS if key in adata.obs), None)
    if label_key is None:
        return None
    labels = adata.obs[label_key].astype(str).to_numpy()
    spatial = label_key == "domain" and "spatial" in adata.obsm
    # labels are for scoring only: the methods never see any obs column
    adata.obs = pd.DataFrame(index=adata.obs_names.copy())
    return Dataset(path.stem, path, adata, labels, label_key, spatial)
