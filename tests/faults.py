"""A tiny fault-injecting TCP server that stands in for a broken monitoring port."""

from __future__ import annotations

import socket
import threading


class FaultServer:
    """Answers every connection according to ``mode``:

    ``hang`` accepts and never answers; ``garbage`` answers 200 with a body that is not JSON;
    ``status`` answers 500; ``cut`` closes the connection as soon as the request arrives.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                conn.recv(65536)
            except OSError:
                conn.close()
                continue
            if self.mode == "hang":
                self.held.append(conn)
                continue
            if self.mode == "garbage":
                body = b'{"server_id": "N1", "version": '
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n"
                             b"\r\n%s" % (len(body), body))
            elif self.mode == "status":
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for conn in self.held:
            conn.close()
