"""Tools: clustering entry point for scanpy workflows."""

from ._siamese_clu import siamese_clu

__all__ = ["siamese_clu"]
