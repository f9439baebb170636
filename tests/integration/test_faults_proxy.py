"""The fault proxy itself, read with raw sockets: it passes replies through unchanged, breaks
them as each fault says, reaches only loopback, stops by itself, and joins its threads."""

from __future__ import annotations

import json
import socket
import zlib
from urllib.parse import urlsplit

import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.process import wait_until

pytestmark = pytest.mark.integration


def request(to: FaultProxy | int, path: str = "/varz") -> socket.socket:
    port = to.port if isinstance(to, FaultProxy) else to
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return sock


def read_all(sock: socket.socket, limit: int = 1 << 22) -> bytes:
    data = b""
    with sock:
        while len(data) < limit:
            got = sock.recv(65536)
            if not got:
                break
            data += got
    return data


def split(reply: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}, body


@pytest.fixture
def proxy(shared_nats_server):
    with FaultProxy(shared_nats_server.monitor_url, bomb_size=8 << 20, huge_size=1 << 20) as p:
        yield p


def test_pass_through_is_the_servers_reply(proxy, shared_nats_server):
    port = urlsplit(shared_nats_server.monitor_url).port
    for path in ("/varz", "/connz?limit=5"):
        through_headers, through = split(read_all(request(proxy, path)))
        direct_headers, direct = split(read_all(request(port, path)))
        assert through_headers.keys() == direct_headers.keys()
        assert through_headers["content-length"] == str(len(through))
        through_doc, direct_doc = json.loads(through), json.loads(direct)
        assert through_doc.keys() == direct_doc.keys()
        assert through_doc["server_id"] == direct_doc["server_id"]


def test_faults_apply_to_their_endpoint_only(proxy):
    proxy.fault("connz", "status_500")
    assert read_all(request(proxy, "/connz?limit=5")).startswith(b"HTTP/1.1 500 ")
    assert read_all(request(proxy, "/varz")).startswith(b"HTTP/1.1 200 ")
    assert [e.fault for e in proxy.seen()] == ["status_500", "pass"]


def test_each_fault_breaks_the_reply_as_it_says(proxy):
    proxy.fault("varz", "cut")
    headers, body = split(read_all(request(proxy)))
    assert len(body) == int(headers["content-length"]) // 2

    proxy.fault("varz", "corrupt")
    headers, body = split(read_all(request(proxy)))
    assert len(body) == int(headers["content-length"]) and b"\xff" * 16 in body

    proxy.fault("varz", "bad_chunking")
    headers, body = split(read_all(request(proxy)))
    assert headers["transfer-encoding"] == "chunked" and body.endswith(b"\r\nzz\r\n")

    proxy.fault("varz", "reset")
    with pytest.raises(ConnectionResetError):
        read_all(request(proxy))

    proxy.fault("varz", "gzip_bomb")
    headers, body = split(read_all(request(proxy)))
    assert headers["content-encoding"] == "gzip" and len(body) < 64 << 10
    assert len(zlib.decompress(body, 16 + zlib.MAX_WBITS)) == 8 << 20

    proxy.fault("varz", "huge_chunked")
    headers, body = split(read_all(request(proxy)))
    assert headers["transfer-encoding"] == "chunked" and body.endswith(b"\r\n0\r\n\r\n")

    proxy.fault("varz", "redirect_loop")
    headers, _ = split(read_all(request(proxy, "/varz?x=1")))
    assert headers["location"] == f"{proxy.url}/varz?x=1"


def test_close_ends_hung_and_dripping_answers_and_joins_every_thread(shared_nats_server):
    proxy = FaultProxy(shared_nats_server.monitor_url, drip_interval=1.0)
    proxy.fault("varz", "hang")
    hung = request(proxy)
    wait_until(lambda: len(proxy.seen()) == 1)  # its fault is chosen once its request is read
    proxy.fault("varz", "drip")
    dripping = request(proxy)
    wait_until(lambda: len(proxy.seen()) == 2)
    # Joins each thread for up to 10 s and raises if one still runs: the drip alone would
    # take a second per byte of the body.
    proxy.close()
    # Both answers were ended by the proxy, unfinished, and not by their clients leaving.
    assert read_all(hung) == b""
    headers, body = split(read_all(dripping))
    assert len(body) < int(headers["content-length"])
    assert [(e.fault, e.abandoned) for e in proxy.seen()] == [("hang", False), ("drip", False)]


def test_the_proxy_stops_by_itself_after_its_lifetime(shared_nats_server):
    proxy = FaultProxy(shared_nats_server.monitor_url, lifetime=0.3)
    try:
        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
            except ConnectionRefusedError:
                return True
            except (ConnectionResetError, TimeoutError):
                # A connection that reached the backlog as the listener closed: ask again.
                return False
            return False

        wait_until(refused, timeout=5)
    finally:
        proxy.close()


def test_the_proxy_reaches_only_loopback():
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("http://192.0.2.1:8222")
