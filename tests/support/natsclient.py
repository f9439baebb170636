"""The NATS client protocol on raw sockets, for driving known traffic: the CONNECT line every
client here sends, a blocking client that counts its bytes, and background traffic.

Standard library only: the connection helper processes of tests.support.crowd import it.
"""

from __future__ import annotations

import json
import socket
import threading


def connect_line(name: str | None = None, *, verbose: bool = False,
                 lang: str = "python") -> bytes:
    """The CONNECT command; without ``name`` the server lists the connection unnamed."""
    options: dict[str, object] = {"verbose": verbose, "pedantic": False}
    if name is not None:
        options["name"] = name
    options.update(lang=lang, version="1.0", headers=True, protocol=1)
    return b"CONNECT " + json.dumps(options).encode() + b"\r\n"


def pub(subject: str, payload: bytes) -> bytes:
    return f"PUB {subject} {len(payload)}\r\n".encode() + payload + b"\r\n"


class RawClient:
    """A blocking NATS client on a raw socket; ``sent`` and ``received`` count every byte.

    It reads the server's INFO (kept as ``info``) and sends CONNECT; with ``flush`` it returns
    once the server has processed that. ``answer_pings`` makes it answer the server's PINGs
    whenever it reads, as a real client does, so the server keeps the connection and keeps
    measuring its rtt. ``rcvbuf`` sets the receive buffer before connecting, which bounds the
    window the server may fill.
    """

    def __init__(self, port: int, name: str | None = None, *, verbose: bool = False,
                 flush: bool = True, answer_pings: bool = False, rcvbuf: int | None = None,
                 timeout: float = 10.0) -> None:
        self.sock = socket.socket()
        self.timeout = timeout
        self.answer_pings = answer_pings
        self.buffer = b""
        self.sent = self.received = 0
        try:
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect(("127.0.0.1", port))
            self.info = self.line()
            assert self.info.startswith(b"INFO {"), self.info
            self.send(connect_line(name, verbose=verbose))
            if flush:
                self.flush()
        except BaseException:
            self.sock.close()
            raise

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def fill(self, block: bool = True) -> bool:
        """Read what the socket has; with ``block``, wait for at least one chunk."""
        if not block:
            self.sock.setblocking(False)
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.received += len(chunk)
        self.buffer += chunk
        return True

    def line(self) -> bytes:
        """The next line the server sent, without its CRLF."""
        while True:
            while b"\r\n" not in self.buffer:
                self.fill()
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            if line != b"PING" or not self.answer_pings:
                return line
            self.send(b"PONG\r\n")

    def body(self, size: int) -> bytes:
        """The ``size`` bytes of a message payload and the CRLF after it."""
        while len(self.buffer) < size + 2:
            self.fill()
        data, self.buffer = self.buffer[:size], self.buffer[size + 2:]
        return data

    def sub(self, subject: str, sid: int) -> None:
        self.send(f"SUB {subject} {sid}\r\n".encode())

    def pub(self, subject: str, payload: bytes) -> None:
        self.send(pub(subject, payload))

    def flush(self) -> None:
        """Round trip a PING: everything sent before it has been processed by the server."""
        self.send(b"PING\r\n")
        while (line := self.line()) != b"PONG":
            if line.startswith(b"-ERR"):
                raise ConnectionError(line.decode())
            if line.startswith((b"MSG ", b"HMSG ")):
                self.body(int(line.rsplit(b" ", 1)[1]))

    def close(self) -> None:
        self.sock.close()


class Traffic:
    """Publishes to a subject its own connection subscribes to, in a background thread.

    Bounded twice, so a test that forgets to stop it cannot hang or flood: at most ``limit``
    messages and ``seconds`` of publishing. Each batch ends with a PING round trip, which reads
    the echoed messages back and paces the publisher to what the server delivers.
    """

    def __init__(self, port: int, *, limit: int = 100_000, seconds: float = 60.0,
                 batch: int = 20, pause: float = 0.01) -> None:
        self.client = RawClient(port, name="traffic", answer_pings=True)
        self.client.sub("traffic.>", 1)
        self.client.flush()
        self.limit, self.seconds, self.batch, self.pause = limit, seconds, batch, pause
        self.published = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = threading.Timer(self.seconds, self._stop.set)
        deadline.daemon = True
        deadline.start()
        try:
            while not self._stop.is_set() and self.published < self.limit:
                for i in range(self.batch):
                    self.client.pub(f"traffic.{i % 4}", b"m" * (16 + i))
                self.client.flush()
                self.published += self.batch
                # A pause between batches, not a synchronisation: the stop event ends it early.
                self._stop.wait(self.pause)
        except OSError as exc:
            # The server going away ends the traffic; the test that stopped it expects that.
            self.error = exc
        finally:
            deadline.cancel()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


def stall_a_consumer(port: int, megabytes: int = 48) -> tuple[RawClient, RawClient]:
    """Make the server queue ``megabytes`` for a subscriber that never reads.

    The kernel's socket buffers take a few MiB (up to a few tens on hosts tuned for throughput);
    the rest stays in the server's pending bytes, below its 64 MiB max_pending, until its write
    deadline cuts the subscriber off as a slow consumer.
    """
    stalled = RawClient(port, name="stalled")
    stalled.sub("stall", 1)
    stalled.flush()
    publisher = RawClient(port, name="stall-publisher")
    chunk = b"s" * (256 * 1024)
    for _ in range(megabytes * 4):
        publisher.pub("stall", chunk)
    publisher.flush()
    return stalled, publisher
