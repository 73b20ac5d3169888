"""Runtime helpers: torch threads, the filter of internal warnings, process ranks, CI and version."""

from __future__ import annotations

import contextlib
import functools
import os
import warnings


def keep_torch_threads(fn):
    """Decorator: restore torch's intra-op thread count after ``fn``.

    numba-parallel code in scanpy (e.g. ``normalize_total``) resets the OpenMP thread count that
    torch shares to the number of cores; on a busy machine that oversubscribes the CPU during
    training (measured: a training step 10-20x slower), and it overrides a user's
    ``torch.set_num_threads`` / ``OMP_NUM_THREADS``.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        n = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != n:
                torch.set_num_threads(n)

    return wrapper


@contextlib.contextmanager
def torch_threads_from_env():
    """Context manager: torch's thread count from ``OMP_NUM_THREADS`` (when set) for the block.

    Other libraries (numba in scanpy) may have changed the shared OpenMP setting since torch
    read the variable at import; training honours the user's variable again.
    """
    import torch

    before = torch.get_num_threads()
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        torch.set_num_threads(int(wanted))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Warnings about how scsiam uses its dependencies internally, which a user cannot act on:
# torch's notices on the sparse CSR tensors of the encoders, Lightning's note on a
# `validation_step` without validation data (scvi's TrainingPlan defines one; this model trains
# without a validation set), its note on iterable datasets with a length (the loaders here never
# use worker processes), and its use of a torch API that torch has deprecated.
INTERNAL_WARNINGS = (
    (UserWarning, r"Sparse (CSR tensor support|invariant checks)"),
    (Warning, r".*`validation_step` but have no `val_dataloader`"),
    (UserWarning, r"Your `IterableDataset` has `__len__` defined"),
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # resuming from checkpoint_dir reuses the folder on purpose (its checkpoints are checked first)
    (Warning, r"Checkpoint directory .* exists and is not empty"),
    # tqdm.auto in a notebook without ipywidgets, when scvi-tools is imported (the text bar works)
    (Warning, r"IProgress not found"),
)


@contextlib.contextmanager
def quiet_internal_warnings():
    """Context manager: hide ``INTERNAL_WARNINGS`` inside the block; every other warning passes."""
    with warnings.catch_warnings():
        for category, message in INTERNAL_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; ``(0, 1)`` outside a distributed run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process is rank 0 (the one that writes results) or the only one."""
    return rank_world()[0] == 0


def in_ci() -> bool:
    """Whether the environment variable ``CI`` is set to a true value (progress bars off)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def package_version() -> str:
    """The installed version of scsiam."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scsiam")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


# Loggers of the libraries scsiam drives, whose INFO notes ("Seed set to 0", "GPU available",
# Lightning's tips, "`Trainer.fit` stopped", squidpy's graph building) a scanpy user did not ask
# for. They are shown again when scanpy's verbosity is "debug".
LIBRARY_LOGGERS = (
    "lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric",
    "lightning.fabric.utilities.seed", "lightning_fabric.utilities.seed",
    "lightning.pytorch.utilities.rank_zero", "scvi",
)  # fmt: skip


def _library_loggers():
    import logging
    import sys

    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    if "squidpy" in sys.modules:  # squidpy logs through spatialdata's logger, with colour codes
        with contextlib.suppress(ImportError):
            from spatialdata._logging import logger as spatialdata_logger

            loggers.append(spatialdata_logger)
    return loggers


@contextlib.contextmanager
def quiet_libraries():
    """Context manager: the notes of Lightning, scvi-tools and squidpy at WARNING inside the block.

    Honours ``scanpy.settings.verbosity``: at ``"debug"`` (4) or above nothing is muted.
    """
    import logging

    try:
        import scanpy as sc

        verbose = int(sc.settings.verbosity) >= 4
    except (ImportError, TypeError, ValueError):  # pragma: no cover - scanpy is a dependency
        verbose = False
    if verbose:
        yield
        return
    loggers = _library_loggers()
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
