"""Lightning data module that feeds sampled subgraphs (seed cells + neighbourhoods) to the plan."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from ._batch import CellSource, make_batch
from ._sampler import CSRGraph, sample_subgraph


class _SubgraphStream(IterableDataset):
    def __init__(self, owner: GraphDataSplitter, train: bool):
        self.owner = owner
        self.train = train

    def __iter__(self):
        return self.owner._iterate(train=self.train)

    def __len__(self):
        return self.owner.n_batches(train=self.train)


class GraphDataSplitter(pl.LightningDataModule):
    """Feeds minibatches of sampled subgraphs; every cell is a seed exactly once per epoch.

    Under DDP the shuffled seeds of each epoch are split across ranks, so each rank sees a
    disjoint share of the cells.

    Parameters
    ----------
    source
        Per-cell arrays.
    graph, ppr
        The expression/spatial cell graph and its PPR diffusion, as :class:`CSRGraph`.
    batch_size
        Seed cells per minibatch (the full data when larger than ``n_obs``).
    fanout
        Sampled neighbours per node and hop during training (``None``: all).
    num_hops
        Hops of neighbourhood around the seeds.
    seed
        Seed of the shuffling and neighbour sampling.
    """

    def __init__(
        self,
        source: CellSource,
        graph: CSRGraph,
        ppr: CSRGraph,
        *,
        batch_size: int = 256,
        fanout: int | None = 10,
        num_hops: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        self.source, self.graph, self.ppr = source, graph, ppr
        self.batch_size = int(batch_size)
        self.fanout, self.num_hops, self.seed = fanout, int(num_hops), int(seed)
        # read by scvi-tools' runner: every cell trains, none is held out (a transductive graph model)
        self.n_train, self.n_val = source.n_obs, 0
        self._epoch = 0

    @property
    def epoch(self) -> int:
        """Number of training epochs drawn so far; it seeds the next epoch's shuffle and sampling."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Continue the epoch sequence at ``epoch`` (the next training epoch is drawn with it)."""
        self._epoch = int(epoch)

    # ranks ---------------------------------------------------------------------------------
    @staticmethod
    def _rank_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def n_batches(self, train: bool = True) -> int:
        _, world = self._rank_world()
        n = math.ceil(self.source.n_obs / world)
        return max(1, math.ceil(n / self.batch_size))

    def _iterate(self, train: bool):
        rank, world = self._rank_world()
        n = self.source.n_obs
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self._epoch)
        self._epoch += 1
        order = torch.randperm(n, generator=gen)
        # pad so that every rank runs the same number of steps (DDP needs equal steps)
        n_per = math.ceil(n / world)
        if n_per * world > n:
            order = torch.cat([order, order[: n_per * world - n]])
        mine = order[rank::world]
        for start in range(0, mine.numel(), self.batch_size):
            seeds = mine[start : start + self.batch_size]
            nodes = sample_subgraph(
                self.graph, seeds, num_hops=self.num_hops, fanout=self.fanout, generator=gen
            )
            yield make_batch(self.source, self.graph, self.ppr, nodes, seeds.numel())

    def inference_batches(self, indices: np.ndarray | None = None, batch_size: int | None = None):
        """Deterministic batches over ``indices`` (all cells by default), full neighbourhoods."""
        idx = (
            torch.arange(self.source.n_obs) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        )
        bs = int(batch_size or max(self.batch_size, 512))
        for start in range(0, idx.numel(), bs):
            seeds = idx[start : start + bs]
            nodes = sample_subgraph(self.graph, seeds, num_hops=self.num_hops, fanout=None)
            yield make_batch(self.source, self.graph, self.ppr, nodes, seeds.numel())

    def train_dataloader(self):
        """Stream of subgraph minibatches (a fresh shuffle and neighbour draw every epoch)."""
        return DataLoader(_SubgraphStream(self, True), batch_size=None, num_workers=0)
