"""One progress bar over every training phase."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

PHASE_NAMES = {"gene": "gene branch", "pretrain": "pretraining", "cluster": "clustering"}


class TrainingProgress(Callback):
    """A Lightning callback that advances one ``tqdm`` bar by an epoch, across the phases.

    Lightning (and scvi-tools' trainer) draw one bar per ``fit``, whose count restarts at every
    phase; this bar counts all epochs of a ``train()`` call, names the phase it is in and shows
    the last training loss. It is drawn by the main process only.

    Parameters
    ----------
    total
        Epochs of all phases together.
    enabled
        Draw the bar (``False``: the callback does nothing).
    """

    def __init__(self, total: int, enabled: bool = True):
        super().__init__()
        self.total, self.enabled = int(total), bool(enabled)
        self._bar = None
        self._done = 0  # epochs of the phases that have finished
        self.phase = None

    def start_phase(self, phase: str) -> None:
        """Name the phase the next ``fit`` trains."""
        self.phase = phase

    def _description(self) -> str:
        return f"scsiam {PHASE_NAMES.get(self.phase, self.phase or '')}".rstrip()

    def _ensure_bar(self):
        if self._bar is None:
            self._bar = _tqdm()(
                total=self.total, desc=self._description(), unit="epoch", dynamic_ncols=True, leave=True
            )
        return self._bar

    def on_train_start(self, trainer, pl_module):
        if not (self.enabled and trainer.is_global_zero):
            return
        bar = self._ensure_bar()
        bar.set_description(self._description(), refresh=False)
        bar.n = self._done + trainer.current_epoch  # a resumed phase starts past its first epochs
        bar.refresh()

    def on_train_epoch_end(self, trainer, pl_module):
        if not (self.enabled and trainer.is_global_zero):
            return
        bar = self._ensure_bar()
        bar.update(1)
        loss = trainer.callback_metrics.get("train_loss_epoch", trainer.callback_metrics.get("train_loss"))
        if loss is not None:
            bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)

    def on_train_end(self, trainer, pl_module):
        if self._bar is not None:
            self._done = self._bar.n

    def close(self) -> None:
        """Close the bar (after the last phase, or when training stops on an error)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _tqdm():
    """tqdm's notebook bar where Jupyter can draw it (ipywidgets installed), else the text bar.

    ``tqdm.auto`` picks the notebook bar in any kernel and, without ipywidgets, warns
    "IProgress not found".
    """
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm

        return tqdm
    from tqdm.auto import tqdm

    return tqdm
