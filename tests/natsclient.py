"""A minimal blocking NATS client over a raw socket, for driving known traffic in tests."""

from __future__ import annotations

import json
import socket


class RawClient:
    def __init__(self, port: int, name: str = "test", host: str = "127.0.0.1",
                 lang: str = "python") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buffer = b""
        info = self._line()
        assert info.startswith(b"INFO "), info
        connect = {"verbose": False, "pedantic": False, "name": name, "lang": lang,
                   "version": "1.0", "headers": True, "protocol": 1}
        self.sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")
        self.flush()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def sub(self, subject: str, sid: int) -> None:
        self.sock.sendall(f"SUB {subject} {sid}\r\n".encode())

    def pub(self, subject: str, payload: bytes) -> None:
        self.sock.sendall(f"PUB {subject} {len(payload)}\r\n".encode() + payload + b"\r\n")

    def flush(self) -> None:
        """Round trip a PING: everything sent before it has been processed by the server."""
        self.sock.sendall(b"PING\r\n")
        while True:
            line = self._line()
            if line == b"PONG":
                return
            if line.startswith(b"-ERR"):
                raise ConnectionError(line.decode())
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                size = int(line.rsplit(b" ", 1)[1])
                while len(self.buffer) < size + 2:
                    self.buffer += self.sock.recv(65536)
                self.buffer = self.buffer[size + 2:]

    def close(self) -> None:
        self.sock.close()
