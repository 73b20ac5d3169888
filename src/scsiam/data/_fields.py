"""An scvi-tools field for a cell graph stored in ``.obsp`` (scvi-tools has none)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scvi.data.fields import BaseAnnDataField, MuDataWrapper


class ObspField(BaseAnnDataField):
    """Registers a sparse ``n_obs × n_obs`` cell graph in ``adata.obsp[attr_key]``.

    The graph is graph-level data: it is never sliced row-wise into minibatches (the data
    splitter samples subgraphs from it instead).
    """

    def __init__(self, registry_key: str, obsp_key: str) -> None:
        super().__init__()
        self._registry_key = registry_key
        self._attr_name = "obsp"
        self._attr_key = obsp_key

    @property
    def registry_key(self) -> str:
        return self._registry_key

    @property
    def attr_name(self) -> str:
        return self._attr_name

    @property
    def attr_key(self) -> str:
        return self._attr_key

    @property
    def is_empty(self) -> bool:
        return False

    def validate_field(self, adata) -> None:
        super().validate_field(adata)
        if self.attr_key not in adata.obsp:
            raise KeyError(
                f"Graph {self.attr_key!r} is not in adata.obsp (keys: {list(adata.obsp.keys())}). "
                "Compute it first (e.g. `sc.pp.neighbors` or `squidpy.gr.spatial_neighbors`) or pass graph_key=None "
                "to let scsiam build a kNN graph."
            )
        G = adata.obsp[self.attr_key]
        if G.shape != (adata.n_obs, adata.n_obs):
            raise ValueError(
                f"adata.obsp[{self.attr_key!r}] has shape {G.shape}, expected ({adata.n_obs}, {adata.n_obs})."
            )
        if not sp.issparse(G):
            raise TypeError(
                f"adata.obsp[{self.attr_key!r}] is dense; a sparse graph is required (convert with scipy.sparse.csr_matrix)."
            )
        data = G.data
        if data.size and not np.isfinite(data).all():
            raise ValueError(
                f"adata.obsp[{self.attr_key!r}] contains NaN or inf edge weights; fix or rebuild the graph."
            )
        check_graph_weights(G, f"adata.obsp[{self.attr_key!r}]")

    def register_field(self, adata) -> dict:
        super().register_field(adata)
        return {"n_edges": int(adata.obsp[self.attr_key].nnz)}

    def transfer_field(self, state_registry: dict, adata_target, **kwargs) -> dict:
        return self.register_field(adata_target)

    def get_summary_stats(self, state_registry: dict) -> dict:
        return {"n_edges": state_registry["n_edges"]}

    def view_state_registry(self, state_registry: dict):
        return None


MuDataObspField = MuDataWrapper(ObspField)


def check_graph_weights(G, where: str) -> None:
    """Refuse negative or all-zero edge weights; warn about a distance graph given as connectivities."""
    import warnings

    data = G.data
    if data.size and data.min() < 0:
        raise ValueError(
            f"{where} has {int((data < 0).sum())} negative edge weight(s); a cell graph needs non-negative "
            "similarities (e.g. scanpy's 'connectivities')."
        )
    if not data.size or not data.any():
        raise ValueError(
            f"{where} has no edge of positive weight; compute a cell graph first (sc.pp.neighbors)."
        )
    if "distances" in where or data.max() > 1.0 + 1e-6 and np.median(data) > 1.0:
        warnings.warn(
            f"{where} looks like a graph of distances (large weights mean far apart), while scsiam reads edge "
            "weights as similarities; pass the connectivities instead (e.g. obsp='connectivities').",
            UserWarning,
            stacklevel=4,
        )
