"""An exporter process's refreshes as its scrapes count them: how many so far, and a wait for one
that started after the call."""

from __future__ import annotations

from tests.support.process import wait_until
from tests.support.series import parse, single


def refreshes(exporter) -> float:
    return single(parse(exporter.scrape()), "fastnats_refreshes_total")


def two_refreshes_later(exporter) -> None:
    """Return once a refresh that started after this call has been published."""
    seen = refreshes(exporter)
    # Refresh seen+1 may have started before the call; seen+2 started after it.
    wait_until(lambda: refreshes(exporter) >= seen + 2)
