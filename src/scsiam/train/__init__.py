"""Training plan of the two phases."""

from ._plan import SiameseTrainingPlan

__all__ = ["SiameseTrainingPlan"]
