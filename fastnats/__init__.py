"""fastnats: a Prometheus exporter for NATS with a Cython core."""

from ._version import __version__

__all__ = ["__version__"]
