"""Registry keys used by scsiam on top of :data:`scvi.REGISTRY_KEYS`."""

from typing import NamedTuple


class _SiamRegistryKeys(NamedTuple):
    GRAPH_KEY: str = "graph"
    PROTEIN_KEY: str = "protein"


SIAM_REGISTRY_KEYS = _SiamRegistryKeys()

#: obsp key under which a graph built by scsiam itself is registered
DEFAULT_GRAPH_KEY = "siamese_connectivities"

#: obsp key of a given graph in the private working copy of ``tl.siamese_clu`` when its own name is taken
INPUT_GRAPH_KEY = "siamese_input_graph"

#: minimum number of cells that the model accepts
MIN_CELLS = 10
