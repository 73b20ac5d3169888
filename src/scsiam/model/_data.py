"""The model's view of registered data: cell arrays and graph views, the spatial graph, new cells, embedding."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from .._constants import DEFAULT_GRAPH_KEY, SIAM_REGISTRY_KEYS
from .._utils import (
    check_finite,
    check_gene_names,
    check_n_obs,
    check_not_negative,
    get_layer,
    in_memory,
    quiet_internal_warnings,
    quiet_libraries,
    restored_on_error,
)
from ..data import _setup as setup
from ..data import ppr_graph, resolve_graph_mode, spatial_knn_graph
from ..dataloaders import CellSource, CSRGraph, GraphDataSplitter


class RegisteredDataMixin:
    """Data access of :class:`~scsiam.SiameseCluModel` (mixed in before scvi-tools' base class)."""

    def _protein_matrix(self, adata_manager=None):
        manager = adata_manager or self.adata_manager
        if SIAM_REGISTRY_KEYS.PROTEIN_KEY not in manager.data_registry:
            return None
        P = manager.get_from_registry(SIAM_REGISTRY_KEYS.PROTEIN_KEY)
        P = P.toarray() if sp.issparse(P) else np.asarray(P)
        return P.astype(np.float32)

    def _splitter(self, adata_manager=None, **kwargs) -> GraphDataSplitter:
        """The data module over a registered AnnData (its cell arrays and graph views cached per manager)."""
        manager = adata_manager or self.adata_manager
        if manager.id not in self._graph_cache:
            A = manager.get_from_registry(SIAM_REGISTRY_KEYS.GRAPH_KEY)
            X = in_memory(manager.get_from_registry(REGISTRY_KEYS.X_KEY))
            batch = manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)
            check_finite(X, "the registered expression matrix")
            P = ppr_graph(A, alpha=self._ppr_params["alpha"], top_k=self._ppr_params["top_k"])
            source = CellSource(X, np.asarray(batch).ravel(), self._protein_matrix(manager))
            self._graph_cache = {manager.id: (source, CSRGraph(A), CSRGraph(P))}
        return self._data_splitter_cls(*self._graph_cache[manager.id], **kwargs)

    def get_spatial_graph(self) -> sp.csr_matrix:
        """The spatial kNN graph of the training cells, as set up (``spatial_key``, ``n_spatial_neighbors``).

        With ``graph_mode="spatial"`` this is the registered cell graph itself; otherwise it is
        built from the registered coordinates with the set-up's neighbour count, slices kept
        apart by ``batch_key``.
        """
        args = self.registry_["setup_args"]
        spatial_key = args.get("spatial_key")
        if spatial_key is None:
            raise ValueError(
                "The model was set up without spatial coordinates (setup_anndata(spatial_key=...))."
            )
        if resolve_graph_mode(args.get("graph_mode"), True) == "spatial":
            return sp.csr_matrix(self.adata_manager.get_from_registry(SIAM_REGISTRY_KEYS.GRAPH_KEY))
        batch_key = args.get("batch_key")
        groups = None if batch_key is None else self.adata.obs[batch_key].to_numpy()
        coords = np.asarray(self.adata.obsm[spatial_key])
        return spatial_knn_graph(coords, n_neighs=args.get("n_spatial_neighbors", 6), groups=groups)

    @torch.inference_mode()
    @quiet_internal_warnings()
    def _embed(self, adata=None, batch_size: int | None = None, soft: bool = False):
        self._check_if_trained(warn=False)
        from_view = getattr(adata, "is_view", False)
        adata = self._validate_anndata(adata)
        manager = self.get_anndata_manager(adata, required=True)
        try:
            return self._embed_registered(manager, batch_size, soft)
        finally:
            if from_view and manager.adata_uuid != self.adata_manager.adata_uuid:
                # the private copy of a view is not kept registered (nor its graphs cached)
                # (scvi's deregister_manager looks the set-up up in the class store only, where a
                # transferred set-up is not kept, so both stores are cleared by key here)
                self._graph_cache.pop(manager.id, None)
                self._per_instance_manager_store.get(self.id, {}).pop(manager.adata_uuid, None)
                self._setup_adata_manager_store.pop(manager.adata_uuid, None)

    def _embed_registered(self, manager, batch_size: int | None, soft: bool):
        splitter = self._splitter(manager, batch_size=batch_size or 1024)
        self.module.eval()
        dev = self.device
        zs, qs = [], []
        for batch in splitter.inference_batches(batch_size=batch_size or 1024):
            batch = {k: v.to(dev) for k, v in batch.items()}
            z = self.module.inference(batch, augment=False)["z"]
            zs.append(z.cpu())
            if soft:
                qs.append(self.module.log_q(z).exp().cpu())
        z = torch.cat(zs).numpy()
        return (z, torch.cat(qs).numpy()) if soft else z

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True) -> AnnData:
        if getattr(adata, "is_view", False) and copy_if_view:
            # scvi-tools would turn the caller's view into an AnnData in place; read a copy instead
            adata = adata.copy()
        if adata is None or adata is self.adata:
            return super()._validate_anndata(adata, copy_if_view=copy_if_view)
        # quiet: scvi-tools' "Input AnnData not setup with scvi-tools. attempting to transfer" notes
        with restored_on_error(adata), quiet_libraries():
            if self.get_anndata_manager(adata) is None:
                self._prepare_new_adata(adata)
            else:
                self._check_genes(adata)
            return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def _prepare_new_adata(self, adata) -> None:
        """Check new cells against the training set-up and give them a cell graph (inductive use)."""
        if not isinstance(adata, AnnData):
            if setup.is_mudata(adata):
                raise TypeError(
                    "The getters take new cells as an AnnData; a new MuData is not set up here. Save the model "
                    "and load it with the new data instead: `model.save(path)`, then "
                    "`SiameseCluModel.load(path, adata=mdata).predict()`."
                )
            raise TypeError(f"Expected an AnnData, got {type(adata).__name__}.")
        self._check_genes(adata)
        registry = self.registry_
        args = registry["setup_args"]
        check_n_obs(adata.n_obs)
        X = get_layer(adata, args.get("layer"))
        check_finite(X, "the new data's expression matrix")
        if self.module.likelihood != "gaussian":
            check_not_negative(
                X, "the new data's expression matrix",
                "the model was trained on raw counts: pass the new cells' counts (layer=... at set-up).",
            )  # fmt: skip
        graph_key = registry["field_registries"][SIAM_REGISTRY_KEYS.GRAPH_KEY]["data_registry"]["attr_key"]
        if graph_key not in adata.obsp:
            if graph_key != DEFAULT_GRAPH_KEY:
                raise KeyError(
                    f"The model was set up with the graph adata.obsp[{graph_key!r}] (given, not built by "
                    "scsiam), which the new data lack. Compute the same kind of graph on the new data and "
                    f"store it as adata.obsp[{graph_key!r}]."
                )
            adata.obsp[DEFAULT_GRAPH_KEY] = setup.build_graph(adata, **args)

    def _check_genes(self, adata) -> None:
        if not isinstance(adata, AnnData):  # MuData: the genes are those of the RNA modality
            rna_mod = (self.registry_["setup_args"].get("modalities") or {}).get("rna_layer")
            adata = adata.mod[rna_mod] if rna_mod in getattr(adata, "mod", {}) else adata
        check_gene_names(training_genes(self.registry_), adata)


def training_genes(registry: dict) -> np.ndarray:
    """The genes a model was trained on, in order, from its registry."""
    return np.asarray(registry["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"]["column_names"])
