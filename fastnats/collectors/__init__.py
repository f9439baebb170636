"""One collector per monitoring endpoint, behind the interface in ``base``.

``ALL`` lists them in the order they run at each refresh: /varz first, because the others read
the ``ServerInfo`` it gives, then the wire counter, so that wire and payload bytes describe the
same moment. A new endpoint is one module here, one entry in ``ALL`` and its catalogue entries.
"""

from .accstatz import AccstatzCollector
from .base import Collector, ServerContext, ServerInfo, Source
from .connz import ConnzCollector, ConnzOptions
from .gatewayz import GatewayzCollector
from .healthz import HealthzCollector
from .jsz import JszCollector
from .leafz import LeafzCollector
from .raftz import RaftzCollector
from .routez import RoutezCollector
from .sockdiag import SockdiagCollector, WireOptions
from .subsz import SubszCollector
from .varz import VarzCollector

ALL: tuple[type[Collector], ...] = (VarzCollector, SockdiagCollector, ConnzCollector,
                                    RoutezCollector, GatewayzCollector, LeafzCollector,
                                    HealthzCollector, SubszCollector, AccstatzCollector,
                                    RaftzCollector, JszCollector)
#: The collectors that ``--collector.<name>`` switches; /varz always runs.
OPTIONAL: tuple[type[Collector], ...] = tuple(c for c in ALL if c.name)

__all__ = [
    "ALL",
    "OPTIONAL",
    "Collector",
    "ConnzCollector",
    "ConnzOptions",
    "ServerContext",
    "ServerInfo",
    "SockdiagCollector",
    "Source",
    "VarzCollector",
    "WireOptions",
]
