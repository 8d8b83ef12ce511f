"""The library version (one place; the package and the ONNX metadata read it)."""

__version__ = "0.1.0"
