"""atheris harness of the sock_diag parser and wire counter, ``_core.WireCounter``.

An input is one configuration byte (bit 0: destroy-events mode; bits 1-2: which listener ports),
then buffers, each led by a 16-bit little-endian word: its low 14 bits are the buffer's length, bit
15 ends a poll after it. Up to four polls go to the core and to the reference
(``_reference.WireCounter``), and the harness checks the contract:

- the core raises nothing but WireProtocolError, with an offset inside the poll's stream and an
  errno that is None or positive, and a failed poll leaves the families as they were;
- core and reference agree on every poll: the same error message, offset and errno, or the same
  families, socket count and rendered bytes;
- the byte counters never go down.
"""

from __future__ import annotations

import struct

import atheris

with atheris.instrument_imports(include=["fastnats"]):
    from fastnats import _core, _reference
    from fastnats.errors import WireProtocolError
    from fastnats.metrics import BY_NAME

from tests.fuzz.common import REFERENCE, Finding, main

PORT_SETS = [{4222: "client"}, {4222: "client", 6222: "cluster", 7422: "leafnode"},
             {4222: "client", 4223: "client"}, {1: "a", 65535: "b", 8080: "websocket"}]
COUNTERS = ("nats_wire_sent_bytes_total", "nats_wire_received_bytes_total",
            "nats_server_total_bytes_sent", "nats_server_total_bytes_received")
MAX_POLLS = 4
MAX_BUFFERS = 64
END_OF_POLL = 0x8000


def polls(data: bytes) -> list[list[bytes]]:
    out: list[list[bytes]] = [[]]
    pos = 0
    while pos + 2 <= len(data) and len(out) <= MAX_POLLS and sum(map(len, out)) < MAX_BUFFERS:
        (word,) = struct.unpack_from("<H", data, pos)
        length = word & 0x3FFF
        out[-1].append(data[pos + 2:pos + 2 + length])
        pos += 2 + length
        if word & END_OF_POLL:
            out.append([])
    if pos < len(data):
        out[-1].append(data[pos:])
    return [buffers for buffers in out if buffers][:MAX_POLLS]


def outcome(counter, buffers: list[bytes]):
    try:
        counter.update(buffers)
    except WireProtocolError as e:
        return ("error", str(e), e.offset, e.errno)
    return ("ok", counter.families(), counter.sockets)


def rendered(counter, render) -> bytes:
    return render([(BY_NAME[name], BY_NAME[name].labels, samples)
                   for name, samples in counter.families().items()])


def check_error(result, buffers: list[bytes]) -> None:
    _, message, offset, errno = result
    size = sum(map(len, buffers))
    if offset is None or not 0 <= offset <= size:
        raise Finding(f"offset {offset} outside the {size}-byte stream: {message}")
    if errno is not None and errno <= 0:
        raise Finding(f"errno {errno}: {message}")


def check_monotonic(before: dict, after: dict) -> None:
    for name in COUNTERS:
        earlier = dict(before.get(name, ()))
        for labels, value in after[name]:
            if value < earlier.get(labels, 0):
                raise Finding(f"{name}{labels} went down from {earlier[labels]} to {value}")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    ports, mode = PORT_SETS[(data[0] >> 1) & 3], "destroy_events" if data[0] & 1 else "poll"
    core, reference = _core.WireCounter(ports, mode), _reference.WireCounter(ports, mode)
    for buffers in polls(data[1:]):
        before = core.families()
        got = outcome(core, [bytearray(b) if k % 2 else b for k, b in enumerate(buffers)])
        want = outcome(reference, buffers) if REFERENCE else got
        if got != want:
            raise Finding(f"core: {got!r:.400}\nreference: {want!r:.400}")
        if got[0] == "error":
            check_error(got, buffers)
            if core.families() != before:
                raise Finding("a failed poll changed the families")
            continue
        check_monotonic(before, got[1])
        text = rendered(core, _core.render_text)
        if REFERENCE and text != rendered(reference, _reference.render_text):
            raise Finding("the renderings differ")


if __name__ == "__main__":
    main(test_one_input)
