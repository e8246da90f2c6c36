"""Slow and oversized requests on raw sockets against the real `mlplat serve` (issue 14): a slowloris
head and a stalled body get a 408 and a closed connection, a head over 16 KiB a 431, an idle
connection is closed; requests that arrive in time are served, and every refusal is counted."""

from __future__ import annotations

import json
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlplat.modeldir import LoadedModel
from serving_server import running_server

TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def model(trained_model_dir: Path) -> LoadedModel:
    return LoadedModel.load(trained_model_dir)


@pytest.fixture(scope="module")
def server(trained_model_dir: Path) -> Iterator[str]:
    with running_server(trained_model_dir, "--no-monitor", "--header-timeout-s", str(TIMEOUT_S),
                        "--body-timeout-s", str(TIMEOUT_S)) as base:
        yield base


def connect(base: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    sock.settimeout(20)
    return sock


def until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def refusals(base: str, reason: str) -> float:
    found = re.findall(rf'mlplat_connection_refusals_total\{{reason="{reason}"\}} ([\d.]+)', httpx.get(f"{base}/metrics").text)
    return float(found[0]) if found else 0.0


def request(model: LoadedModel, body: bytes) -> bytes:
    return (f"POST /v1/models/{model.name}:predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def body_of(model: LoadedModel) -> bytes:
    return json.dumps({"instances": [np.zeros(len(model.feature_names)).tolist()]}).encode()


def test_a_slowloris_head_gets_408_and_is_disconnected(server: str, model: LoadedModel) -> None:
    before = refusals(server, "head_timeout")
    head = request(model, body_of(model))
    sock = connect(server)
    started, answer = time.monotonic(), b""
    for byte in head:  # one byte every 0.2 s, until the server answers: the whole head would take minutes
        sock.sendall(bytes([byte]))
        if select.select([sock], [], [], 0.2)[0]:
            break
    answer = until_closed(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"headers not received within 1.5 s" in answer
    assert time.monotonic() - started < 10  # cut off, not served after minutes
    assert refusals(server, "head_timeout") == before + 1


def test_a_stalled_body_gets_408_and_is_disconnected(server: str, model: LoadedModel) -> None:
    before = refusals(server, "body_timeout")
    sock = connect(server)
    whole = request(model, body_of(model))
    sock.sendall(whole[:-10])  # the head and all but 10 bytes of the body, then nothing
    answer = until_closed(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"body not received within 1.5 s" in answer, answer
    assert refusals(server, "body_timeout") == before + 1
    assert httpx.post(f"{server}/v1/models/{model.name}:predict", content=body_of(model),
                      headers={"content-type": "application/json"}).status_code == 200  # the server is fine


def test_a_head_over_16_kib_gets_431(server: str, model: LoadedModel) -> None:
    before = refusals(server, "head_too_large")
    sock = connect(server)
    body = body_of(model)
    try:
        sock.sendall(f"POST /v1/models/{model.name}:predict HTTP/1.1\r\nHost: test\r\nx-request-id: {'a' * 20_000}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = until_closed(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert refusals(server, "head_too_large") == before + 1


def test_an_idle_connection_is_closed_and_timely_requests_are_served(server: str, model: LoadedModel) -> None:
    idle = connect(server)
    assert until_closed(idle) == b""  # closed without an answer
    idle.close()
    # a head and body that take a while, but less than the timeouts, on one keep-alive connection: both answered
    sock = connect(server)
    for _ in range(2):
        whole = request(model, body_of(model))
        for part in (whole[:30], whole[30:-5], whole[-5:]):
            sock.sendall(part)
            time.sleep(TIMEOUT_S / 4)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    sock.close()
