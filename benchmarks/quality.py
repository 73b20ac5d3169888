"""Clustering quality of scsiam and its peers on the labelled ``.h5ad`` files of a folder.

Runs the protocol of ``BENCHMARK.md`` (``/work/shared/BENCHMARK.md``):

- labels: ``obs['domain']`` (spatial files) or ``obs['cell_type']``; they are read for scoring only,
  every method gets a copy of the data with **all** ``obs`` columns deleted;
- ``k`` = number of true classes (``scsiam-autok`` and ``scanpy-leiden-default`` choose their own);
- seeds 0, 1, 2 by default; metrics ARI, NMI, ACC (``scsiam.metrics``), seconds, k found.

Writes to ``--out`` (default ``benchmarks/results``):

- ``quality.csv``: one row per file x method x seed, merged into what is already there
  (``--reuse`` skips rows already computed with the same settings, so slow peers run once);
- ``quality.md``: per-file table (mean +- std over seeds), ARI summary with the best peer, auto-k table;
- ``quality_ari.png``: ARI per dataset and method, error bars = std over seeds.

The methods are in ``benchmarks/methods.py``, the peers in ``benchmarks/peers.py``, the CSV in
``benchmarks/store.py`` and the tables and figure in ``benchmarks/report.py``. Run it from the
repository root, as a file or as the module ``python -m benchmarks.quality`` (same options).

Examples
--------
All defaults (scsiam, scsiam-autok and the peers, scVI included), seeds 0 1 2::

    python benchmarks/quality.py --data ../shared/data

Peers without scVI, reusing cached rows::

    python benchmarks/quality.py --data ../shared/data --no-scvi --reuse \\
        --methods scanpy-leiden-default scanpy-leiden-k pca-kmeans spatial-leiden-k

Ablations and variants of scsiam::

    python benchmarks/quality.py --data ../shared/data --ablations --reuse

Only rebuild the Markdown table and figure from the CSV::

    python benchmarks/quality.py --report-only
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

if not __package__:  # python benchmarks/quality.py: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np
import pandas as pd

from benchmarks.data import DEFAULT_DATA, LABEL_KEYS, Dataset, find_files, load_dataset
from benchmarks.methods import DEFAULT_METHODS, METHODS, Method, applies_to, method_config, select_methods
from benchmarks.peers import PEER_FUNCS, ScviCache, run_scsiam, warm_up
from benchmarks.report import write_report
from benchmarks.store import done_before, dumps, read_results, upsert_row

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2)

QUIET_LOGGERS = (
    "scvi", "lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
    "spatialdata._logging", "squidpy", "scsiam",
)  # fmt: skip


def _quiet(spatial: bool = False) -> None:
    """Silence library INFO logs. Libraries reset their levels on import: import them first (untimed)."""
    import logging

    with contextlib.suppress(ImportError):
        import lightning.pytorch  # noqa: F401
        import scvi  # noqa: F401
    if spatial:
        with contextlib.suppress(ImportError):
            import squidpy  # noqa: F401

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _machine() -> str:
    desc = f"{platform.machine()}, {os.cpu_count()} CPU cores"
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            desc += f", {torch.cuda.get_device_name(0)}"
    return desc


def _train_kwargs(method: Method, args) -> str:
    """The ``train_kwargs`` column: ``--scsiam-train-kwargs`` (smoke tests) for scsiam's methods, else ``""``."""
    return dumps(args.scsiam_train_kwargs) if method.family != "peer" and args.scsiam_train_kwargs else ""


def run_one(ds: Dataset, method: Method, seed: int, args, scvi_cache: ScviCache, config: dict) -> dict:
    """Run one method on one file with one seed; the CSV row (``status="error"`` when it raised)."""
    from scsiam.metrics import evaluate

    row: dict[str, Any] = {
        "file": ds.name, "kind": ds.kind, "label_key": ds.label_key, "n_obs": ds.adata.n_obs,
        "n_vars": ds.adata.n_vars, "true_k": ds.k, "method": method.name, "seed": seed,
        "config": dumps(config), "train_kwargs": _train_kwargs(method, args),
        "command": args.command, "machine": args.machine,
        "timestamp": _dt.datetime.now().isoformat(timespec="seconds"),
        "ARI": np.nan, "NMI": np.nan, "ACC": np.nan, "seconds": np.nan, "k_found": np.nan,
        "k_model": np.nan, "extra": "", "error": "",
    }  # fmt: skip
    _quiet(ds.spatial)
    t0 = time.perf_counter()
    try:
        if method.family == "peer":
            pred, extra = PEER_FUNCS[method.name](
                ds, seed, scvi_cache=scvi_cache, epochs=config.get("scvi_max_epochs")
            )
        else:
            pred, extra = run_scsiam(ds, seed, method, args.scsiam_train_kwargs or {})
        seconds = time.perf_counter() - t0
        if "scvi_train_s" in extra and extra.get("scvi_train_reused"):
            seconds += extra["scvi_train_s"]  # each scVI peer is charged the (shared) training time
        scores = evaluate(ds.labels, pred)
        row.update(scores)
        for name in ("kmeans", "start", "final"):  # other partitions of scsiam's run, scored the same way
            if f"{name}_labels" in extra:
                extra[f"{name}_ARI"] = round(
                    float(evaluate(ds.labels, extra.pop(f"{name}_labels"))["ARI"]), 4
                )
        row.update(
            status="ok", seconds=round(seconds, 3), k_found=int(pd.Series(pred).nunique()),
            k_model=extra.pop("k_model", np.nan), extra=dumps(extra),
        )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - one failing run must not stop the benchmark
        row.update(
            status="error",
            seconds=round(time.perf_counter() - t0, 3),
            error=f"{type(err).__name__}: {err}"[:500],
        )
        print(traceback.format_exc(limit=-4), file=sys.stderr, flush=True)
    return row


def _print_row(row: dict) -> None:
    head = f"{row['file']:32s} {row['method']:22s} seed={row['seed']}"
    if row["status"] == "ok":
        print(f"{head} ARI={row['ARI']:.3f} NMI={row['NMI']:.3f} k={row['k_found']} {row['seconds']:.1f}s",
              flush=True)  # fmt: skip
    else:
        print(f"{head} FAILED {row['error']}", flush=True)


def run_benchmark(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "quality.csv"
    names = select_methods(args)
    files = find_files(Path(args.data), args.files)
    print(f"[quality] {len(files)} files, methods {names}, seeds {args.seeds} -> {csv_path}", flush=True)
    scvi_cache = ScviCache()
    warm_up()
    for path in files:
        ds = load_dataset(path)
        if ds is None:
            print(f"[quality] skip {path.name}: no obs column among {LABEL_KEYS}", flush=True)
            continue
        for seed in args.seeds:
            for name in names:
                method = METHODS[name]
                if not applies_to(method, ds):
                    continue
                config = method_config(method, ds, args)
                if args.reuse and done_before(
                    read_results(csv_path), ds.name, name, seed, dumps(config), _train_kwargs(method, args)
                ):
                    print(f"{ds.name:32s} {name:22s} seed={seed} reused", flush=True)
                    continue
                row = run_one(ds, method, seed, args, scvi_cache, config)
                upsert_row(csv_path, row)
                _print_row(row)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder of labelled .h5ad files")
    p.add_argument(
        "--files", nargs="+", help="only these files, run in this order (stems, e.g. pbmc10x_top2000)"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument(
        "--methods", nargs="+", help=f"methods to run (default: {DEFAULT_METHODS}); known: {list(METHODS)}"
    )
    p.add_argument(
        "--ablations", action="store_true", help="add the ablations and variants of scsiam to the default set"
    )
    p.add_argument(
        "--ablations-only", action="store_true", help="with --ablations: scsiam, ablations and variants only"
    )
    p.add_argument("--no-scvi", action="store_true", help="leave out the scVI peers")
    p.add_argument("--scvi-epochs", type=int, default=200, help="cap on scVI's default max_epochs heuristic")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (quality.csv/.md, quality_ari.png)")
    p.add_argument(
        "--reuse", action="store_true", help="skip rows already in quality.csv with the same settings"
    )
    p.add_argument(
        "--report-only", action="store_true", help="only rewrite quality.md and the figure from the CSV"
    )
    # smoke tests only: never used for reported numbers (such rows are left out of the tables)
    p.add_argument("--scsiam-train-kwargs", type=json.loads, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ablations_only:
        args.ablations = True
    args.command = "python benchmarks/quality.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    args.machine = _machine()
    return args


def main(argv=None) -> None:
    warnings.filterwarnings("ignore")
    args = parse_args(argv)
    if not args.report_only:
        import scanpy as sc

        sc.settings.verbosity = 0
        run_benchmark(args)
    write_report(Path(args.out))


if __name__ == "__main__":
    main()
