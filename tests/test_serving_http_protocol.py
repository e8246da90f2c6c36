"""The guarded httptools protocol (mlplat.serving.http_protocol) on raw sockets, run by a real uvicorn
server in-process around a tiny ASGI app: each response goes out in one write, pipelined requests are
neither counted together against the head limit nor cut off by the head timer while being answered,
and a header line that never ends is refused at the limit instead of being buffered."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from mlplat.serving.http_protocol import protocol_class

HEAD_TIMEOUT_S = 0.5
BODY_TIMEOUT_S = 1.0  # /slow takes longer
MAX_HEAD_BYTES = 16 * 1024
WRITES: list[bytes] = []  # every write the server made on its sockets, in order


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """200 with the request's path as body; /slow answers after 3 head timeouts (1.5 body timeouts); /bad answers 400."""
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    if scope["path"] == "/slow":
        await asyncio.sleep(3 * HEAD_TIMEOUT_S)
    body = scope["path"].encode()
    status = 400 if scope["path"] == "/bad" else 200
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class CountingTransport:
    """The real transport, with every write recorded."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self._transport.write(data)

    def writelines(self, parts: Any) -> None:
        self.write(b"".join(parts))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


Guarded = protocol_class(HEAD_TIMEOUT_S, BODY_TIMEOUT_S, MAX_HEAD_BYTES)


class CountedProtocol(Guarded):  # type: ignore[misc, valid-type]
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CountingTransport(transport))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free, http=CountedProtocol, lifespan="off",
                                           log_level="warning", timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield free
    server.should_exit = True
    thread.join(10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    return sock


def get(path: str, extra: str = "", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode()


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """`count` whole responses (every test response has a content-length)."""
    data, responses = b"", []
    while len(responses) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(responses)} responses: {data!r}"
        data += chunk
        while b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            if len(rest) < length:
                break
            responses.append(head + b"\r\n\r\n" + rest[:length])
            data = rest[length:]
    return responses


@pytest.mark.parametrize("path", ["/ok", "/bad"])
def test_a_response_goes_out_in_one_write(port: int, path: str) -> None:
    with connect(port) as sock:
        WRITES.clear()
        sock.sendall(get(path))
        (response,) = read_responses(sock, 1)
    assert response.split(b" ")[1] == (b"400" if path == "/bad" else b"200")
    assert response.endswith(path.encode())
    assert WRITES == [response]  # head and body together: one send, not two


def test_head_and_expect_continue_still_get_their_heads(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(get("/ok", method="HEAD"))  # a HEAD response has no body write: the head still goes out
        sock.settimeout(5)
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n"), head
        sock.sendall(b"POST /posted HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"  # sent at once, not held for the answer
        sock.sendall(b"data")
        (response,) = read_responses(sock, 1)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"/posted")


def test_pipelined_heads_are_each_within_the_limit(port: int) -> None:
    header = f"x-filler: {'f' * (MAX_HEAD_BYTES // 2)}\r\n"  # each head under the limit, three together over it
    with connect(port) as sock:
        sock.sendall(b"".join(get(f"/p{i}", header) for i in range(3)))
        responses = read_responses(sock, 3)
    assert [r.split(b"\r\n\r\n")[1] for r in responses] == [b"/p0", b"/p1", b"/p2"]
    assert all(r.startswith(b"HTTP/1.1 200") for r in responses)


def test_a_pipelined_request_is_not_cut_off_while_it_is_answered(port: int) -> None:
    with connect(port) as sock:  # the second request takes longer than the head timeout to answer
        sock.sendall(get("/first") + get("/slow"))
        responses = read_responses(sock, 2)
    assert [r.split(b"\r\n\r\n")[1] for r in responses] == [b"/first", b"/slow"]


def post(path: str, length: int) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {length}\r\n\r\n".encode()


def test_a_queued_body_that_stalls_gets_its_408_after_the_earlier_answer(port: int) -> None:
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(get("/slow") + post("/stalled", 10) + b"0123")  # the last 6 bytes never come: a 408, after /slow
        responses = read_responses(sock, 2)
        elapsed = time.monotonic() - started
    assert responses[0].startswith(b"HTTP/1.1 200") and responses[0].endswith(b"/slow"), responses
    assert responses[1].startswith(b"HTTP/1.1 408"), responses
    assert elapsed >= 3 * HEAD_TIMEOUT_S + BODY_TIMEOUT_S - 0.1  # timed from /slow's answer, not from the head


def test_a_header_line_that_never_ends_is_refused_at_the_limit(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: test\r\nx-endless: ")
        answer = b""
        try:
            for _ in range(64):  # 4 x the limit, in 1 KiB pieces, and never the end of the line
                sock.sendall(b"a" * 1024)
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
