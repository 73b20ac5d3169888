"""The keyword arguments the model's constructor and ``train`` accept, read from the signatures they pass to."""

from __future__ import annotations

import inspect

from ..module import ClusterHead, SiameseModule


class OptionsMixin:
    """``model_options()`` / ``train_options()``: what a misspelt option is checked against."""

    @classmethod
    def model_options(cls) -> set[str]:
        """Keyword arguments the constructor accepts (its own and :class:`~scsiam.module.SiameseModule`'s)."""
        own = _parameters(cls.__init__) - {"adata", "module_kwargs"}
        # the reserved set-up values (n_input, ...) stay accepted here: the constructor names them
        return (
            own
            | _parameters(SiameseModule.__init__)
            | (_parameters(ClusterHead.__init__) - {"n_latent", "k"})
        )

    @classmethod
    def train_options(cls) -> set[str]:
        """Keyword arguments :meth:`train` accepts (its own, scvi-tools' and Lightning's trainer's)."""
        from lightning.pytorch import Trainer as LightningTrainer
        from scvi.train import Trainer

        own = _parameters(cls.train) - {"trainer_kwargs"}
        return own | _parameters(Trainer.__init__) | (_parameters(LightningTrainer.__init__) - {"max_epochs"})


def _parameters(fn) -> set[str]:
    """Names of the keyword parameters of ``fn`` (without ``self`` and ``*args`` / ``**kwargs``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds and n != "self"}
