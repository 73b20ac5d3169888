"""Training plan and the subgraph data module."""

from ._plan import SiameseTrainingPlan
from ._splitter import CellSource, GraphDataSplitter

__all__ = ["CellSource", "GraphDataSplitter", "SiameseTrainingPlan"]
