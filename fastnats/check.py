"""``fastnats-exporter --check``: one refresh of every server, and a report of what each
collector would export and what went wrong. The first thing to run when a dashboard is empty."""

from __future__ import annotations

from collections.abc import Iterator

from .collector import NatsCollector, ServerCollector


def report(collector: NatsCollector) -> tuple[str, bool]:
    """The report of the last refresh, and whether every server and collector was read."""
    lines: list[str] = []
    ok = True
    for server in collector.servers:
        lines += _server_lines(server)
        ok = ok and server.up and not server.problems
    lines.append("OK: every endpoint was read" if ok else
                 "PROBLEMS: see the lines marked ERROR above")
    return "\n".join(lines) + "\n", ok


def _server_lines(server: ServerCollector) -> Iterator[str]:
    state = "up" if server.up else "DOWN"
    yield f"server {server.target.name} ({server.target.shown}): {state}"
    samples = server.nats_samples()
    failed = {problem.endpoint: problem for problem in server.problems}
    for collector in (server.varz, *server.collectors):
        problem = failed.get(collector.endpoint)
        if problem is not None:
            yield f"  {collector.endpoint:<8} ERROR {problem}"
            continue
        if not server.up:
            yield f"  {collector.endpoint:<8} not read"
            continue
        families = [metric.name for metric in collector.families if samples.get(metric.name)]
        series = sum(len(samples[name]) for name in families)
        if families:
            yield f"  {collector.endpoint:<8} ok    {len(families)} families, {series} series"
        else:
            yield f"  {collector.endpoint:<8} off   exports nothing here (see the log above)"
