"""Loss terms over the epochs: :func:`scsiam.pl.training_history`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ._utils import _finish


def training_history(
    model_or_history,
    *,
    keys: list[str] | None = None,
    ax=None,
    show: bool | None = None,
    return_fig: bool = False,
):
    """Every loss term over the epochs, with the pretraining/clustering phases marked.

    Parameters
    ----------
    model_or_history
        A trained :class:`~scsiam.SiameseCluModel` or its ``history`` dict.
    keys
        History keys to plot (default: all loss terms).
    ax, show, return_fig
        As in scanpy.

    Returns
    -------
    The figure when ``return_fig`` is true; the Axes with ``show=False``; else ``None``.
    """
    history = getattr(model_or_history, "history", model_or_history)
    if not isinstance(history, dict) or not history:
        raise ValueError("No training history found; train the model first.")
    if keys is None:  # every loss term that was ever non-zero (e.g. no KL term for backbone="ae")
        keys = [
            k for k in history
            if (k.startswith("loss_") or k == "train_loss") and np.nanmax(np.abs(_values(history[k])), initial=0) > 0
        ]  # fmt: skip
    weight = _values(history["cluster_weight"]) if "cluster_weight" in history else None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    for k in keys:
        vals = _values(history[k])
        # epochs as recorded (keys logged only while clustering start later), counted from 1
        index = getattr(history[k], "index", None)
        epochs = np.asarray(index, dtype=float) + 1 if index is not None else np.arange(1, len(vals) + 1)
        if k.removesuffix("_train") == "loss_cluster" and weight is not None and len(weight) == len(vals):
            vals = np.where(weight > 0, vals, np.nan)  # logged as 0 before the clustering phase
        ax.plot(epochs, vals, label=k.removesuffix("_train"))
    if "cluster_weight" in history:
        w = np.asarray(history["cluster_weight"]).ravel().astype(float)
        start = int(np.argmax(w > 0)) + 1 if (w > 0).any() else None
        if start is not None:
            ax.axvline(start - 0.5, color="grey", ls="--", lw=1)
            ax.text(
                start - 0.5, ax.get_ylim()[1], " clustering", va="top", ha="left", fontsize=8, color="grey"
            )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.set_yscale("symlog", linthresh=1e-2)
    if all(np.nanmin(_values(history[k]), initial=0) >= 0 for k in keys):
        ax.set_ylim(bottom=0)  # no empty negative half of the symlog axis
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("scsiam training history")
    return _finish(fig, show, return_fig, ax)


def _values(entry) -> np.ndarray:
    """The values of one history entry (a one-column frame or an array) as floats."""
    return np.asarray(entry, dtype=float).ravel()
