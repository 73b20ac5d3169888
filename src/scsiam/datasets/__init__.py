"""Small real datasets shipped with scsiam."""

from ._datasets import starmap_mpfc, worm_neuron

__all__ = ["starmap_mpfc", "worm_neuron"]
