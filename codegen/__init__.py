"""codegen: FoldedModel -> a self-contained C library (Jinja2 templates + the c_runtime kernels)."""
from .generate import LIBRARY_FILES, build_context, generate

__all__ = ["LIBRARY_FILES", "build_context", "generate"]
