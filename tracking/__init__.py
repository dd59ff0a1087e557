"""tracking: MLflow, in one place: the store and experiments (client), a search's runs (runs: one parent
run per study, one nested run per trial) and the Model Registry of promoted models (registry). Search,
promote, validate and report all reach MLflow through here."""
from .registry import Registry, RegistryError

__all__ = ["Registry", "RegistryError"]
