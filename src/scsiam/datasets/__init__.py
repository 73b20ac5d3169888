"""Small real datasets shipped with scsiam."""

from ._datasets import cbmc_citeseq, starmap_mpfc, worm_neuron

__all__ = ["cbmc_citeseq", "starmap_mpfc", "worm_neuron"]
