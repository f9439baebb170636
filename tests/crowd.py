"""Many NATS client connections on raw sockets, driven in lock step, for the /connz tests.

``Crowd`` connects in windows: each socket sends CONNECT (and any commands) as soon as it connects,
then a PING, and every PONG of a window arrives before the next window connects, so the server's accept
backlog never overflows and every command has been processed when a call returns.

Run as a script, ``python tests/crowd.py PORT COUNT NAME`` holds COUNT idle connections named
NAME, prints ``ready COUNT`` and keeps them until its stdin closes: that spreads more connections
over processes than one process may hold open files. Stdlib only, so it runs without the package.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys

PONG = b"PONG\r\n"
WINDOW = 500


def connect_line(name: str) -> bytes:
    return b"CONNECT " + json.dumps({
        "verbose": False, "pedantic": False, "name": name, "lang": "python", "version": "1.0",
        "headers": True, "protocol": 1}).encode() + b"\r\n"


def pub(subject: str, payload: bytes) -> bytes:
    return f"PUB {subject} {len(payload)}\r\n".encode() + payload + b"\r\n"


class Crowd:
    """Connections that all share one name; ``socks`` keeps them in the order they opened.

    Messages delivered to them are read and dropped by ``round_trip``; the payloads the tests
    send never contain ``PONG``, so the first ``PONG`` line a socket shows answers its PING.
    """

    def __init__(self, port: int, count: int, name: str, *, commands: bytes = b"",
                 timeout: float = 20.0) -> None:
        self.port = port
        self.name = name
        self.timeout = timeout
        self.socks: list[socket.socket] = []
        try:
            for start in range(0, count, WINDOW):
                window = []
                for _ in range(min(WINDOW, count - start)):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                    self.socks.append(sock)
                    window.append(sock)
                    # CONNECT at once: until the server reads it, /connz lists the connection
                    # without a name.
                    sock.sendall(connect_line(name) + commands)
                self.round_trip(dict.fromkeys(window, b""))
        except BaseException:
            self.close()
            raise

    def round_trip(self, commands: dict[socket.socket, bytes]) -> None:
        """Send each socket its commands and a PING; return once each has read its PONG."""
        with selectors.DefaultSelector() as selector:
            tails = {}
            for sock, data in commands.items():
                sock.sendall(data + b"PING\r\n")
                selector.register(sock, selectors.EVENT_READ)
                tails[sock] = b""
            while tails:
                ready = selector.select(self.timeout)
                if not ready:
                    raise TimeoutError(f"{len(tails)} connections of {self.name} got no PONG")
                for key, _ in ready:
                    sock = key.fileobj
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        raise ConnectionError(f"the server closed a connection of {self.name}")
                    # Keep the end of what was read, so a PONG split across reads is found.
                    seen = tails[sock] + chunk
                    if PONG in seen:
                        selector.unregister(sock)
                        del tails[sock]
                    else:
                        tails[sock] = seen[-len(PONG):]

    def ports(self) -> list[int]:
        """The local port of each connection: /connz reports it as ``port``."""
        return [sock.getsockname()[1] for sock in self.socks]

    def close(self, count: int | None = None) -> None:
        """Close the ``count`` oldest connections (all by default)."""
        count = len(self.socks) if count is None else count
        for sock in self.socks[:count]:
            sock.close()
        del self.socks[:count]


def main(argv: list[str]) -> int:
    port, count, name = int(argv[0]), int(argv[1]), argv[2]
    crowd = Crowd(port, count, name)
    print(f"ready {len(crowd.socks)}", flush=True)
    sys.stdin.read()
    crowd.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
