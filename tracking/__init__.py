"""tracking: MLflow runs and the Model Registry, shared by the stages (promote today; the search's run
tracking is to move here from search/tracking.py)."""
from .registry import Registry, RegistryError

__all__ = ["Registry", "RegistryError"]
