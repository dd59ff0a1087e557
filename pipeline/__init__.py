"""pipeline: the command line (`python -m pipeline STAGE key=value ...`) and one function per stage.

Stage functions take a composed config (pipeline.config.compose) and are what tests call directly.
"""
from .config import compose
from .errors import UserError

__all__ = ["compose", "UserError"]
