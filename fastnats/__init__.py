"""fastnats: a Prometheus exporter for NATS with a Cython core.

The command line is ``fastnats-exporter`` (``fastnats.cli``). For use inside another program,
``NatsCollector`` is a prometheus_client collector over one or more nats-servers.
"""

from ._version import __version__
from .collector import NatsCollector, ServerCollector
from .collectors import ConnzOptions, WireOptions
from .errors import ConfError, ConnzDecodeError, FastNatsError, ScrapeError, WireProtocolError
from .target import Target, parse_target

__all__ = [
    "ConfError",
    "ConnzDecodeError",
    "ConnzOptions",
    "FastNatsError",
    "NatsCollector",
    "ScrapeError",
    "ServerCollector",
    "Target",
    "WireOptions",
    "WireProtocolError",
    "__version__",
    "parse_target",
]
