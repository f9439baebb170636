"""HTTP client for a nats-server monitoring port (/varz, /connz, ...), returning raw bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from ..errors import ScrapeError

# What a NATS client port says first, where an HTTP server would send a status line.
_NATS_GREETING = "INFO {"


class MonitorClient:
    """Reads monitoring endpoints of one server; every request is bounded by ``timeout``."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def get(self, endpoint: str,
                  params: Mapping[str, str | int] | None = None) -> bytearray:
        """GET ``/endpoint`` and return the body; any failure raises :class:`ScrapeError`."""
        url = f"{self.base_url}/{endpoint}"
        try:
            async with self._session.get(url, params=params, timeout=self._timeout) as resp:
                if resp.status != 200:
                    raise ScrapeError(endpoint, "http_status", f"HTTP {resp.status} from {url}")
                # One growing buffer: read() joins its chunks into a second whole copy, and the
                # /connz body of 100k connections is 60 MB.
                body = bytearray()
                async for chunk in resp.content.iter_any():
                    body += chunk
                return body
        except asyncio.TimeoutError:
            raise ScrapeError(endpoint, "timeout", f"no answer from {url} within "
                                                   f"{self._timeout.total:g}s") from None
        except aiohttp.ClientError as exc:
            if _NATS_GREETING in str(exc):
                raise ScrapeError(
                    endpoint, "connect", f"{self.base_url} is the NATS client port, not the "
                    f"monitoring port; point fastnats at the monitoring port (nats-server -m "
                    f"PORT, or http: PORT in the conf)") from None
            raise ScrapeError(endpoint, "connect", f"{url}: {exc}") from None


def new_session() -> aiohttp.ClientSession:
    # One pooled session for all servers; nats-server serves each endpoint on a short-lived
    # request, so a small per-host limit is enough and keeps a hung server from hoarding sockets.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit_per_host=4, ttl_dns_cache=60),
        auto_decompress=True,
        raise_for_status=False,
    )
