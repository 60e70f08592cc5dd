"""The REST server over real HTTP on 127.0.0.1 with the real tiny model."""
from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.predict import load_predictor
from core.serve import Server, check_bind, is_loopback, make_server

E = 8
Z = [0.25] * E


def _start(server: Server) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    return t


@pytest.fixture(scope="module")
def predictor(tiny_job_dir: Path):
    return load_predictor(tiny_job_dir / "model")


@pytest.fixture(scope="module")
def server(predictor: Any) -> Iterator[Server]:
    s = make_server(predictor, "tiny", "127.0.0.1", 0, version=1, max_body=64 * 1024, read_timeout=1.0)
    t = _start(s)
    yield s
    s.stop()
    t.join()


def call(server: Server, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


def post(server: Server, obj: Any, path: str = "/v1/models/tiny:predict", **kw: Any) -> tuple[int, Any]:
    return call(server, "POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json", **kw})


@pytest.mark.slow
def test_health_and_model_status(server: Server) -> None:
    assert call(server, "GET", "/healthz") == (200, {"status": "ok", "model": "tiny"})
    status, body = call(server, "GET", "/v1/models/tiny")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    assert call(server, "GET", "/v1/models/other")[0] == 404


@pytest.mark.slow
def test_predict_in_the_vertex_shape(server: Server, predictor: Any) -> None:
    status, body = post(server, {"instances": [{"embeddings": Z, "key": "a"}, {"embeddings": Z, "key": "b"}]})
    assert status == 200
    assert [p["key"] for p in body["predictions"]] == ["a", "b"]
    assert body["predictions"][0]["image_bytes"] == predictor.predict([{"embeddings": Z, "key": "a"}])[0]["image_bytes"]
    status, body = post(server, {"instances": [{"embeddings": Z, "key": "v"}]},
                        path="/v1/models/tiny/versions/1:predict")
    assert status == 200


@pytest.mark.slow
def test_bad_instances_inline_and_all_bad_is_400(server: Server) -> None:
    status, body = post(server, {"instances": [{"embeddings": Z, "key": "ok"}, {"embeddings": Z[:3], "key": "short"}]})
    assert status == 200
    assert "image_bytes" in body["predictions"][0]
    assert body["predictions"][1] == {"error": "instance 1: 'embeddings' has 3 values, the model takes 8",
                                      "key": "short"}
    status, body = post(server, {"instances": [{"image_bytes": {"b64": "%%%"}, "key": "x"}]})
    assert status == 400 and "not valid base64" in body["error"]


@pytest.mark.parametrize("body, status", [
    (b"{not json", 400), (b"[]", 400), (b'{"instances": 3}', 400), (b'{"instances": []}', 400),
    (b'{"nothing": 1}', 400), (b"\xff\xfe", 400), (b"x" * (64 * 1024 + 1), 413), (b"[" * 60_000, 400),
])
@pytest.mark.slow
def test_malformed_requests_get_a_json_error(server: Server, body: bytes, status: int) -> None:
    got, obj = call(server, "POST", "/v1/models/tiny:predict", body)
    assert got == status and isinstance(obj["error"], str)


@pytest.mark.slow
def test_wrong_routes_and_methods(server: Server) -> None:
    assert call(server, "GET", "/v1/models/tiny:predict")[0] == 405
    assert call(server, "POST", "/v1/models/nope:predict", b"{}")[0] == 404
    assert call(server, "DELETE", "/healthz")[0] == 405
    assert call(server, "GET", "/")[0] == 404


def _raw(server: Server, data: bytes) -> bytes:
    with socket.create_connection(server.server_address[:2], timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.slow
def test_missing_length_slow_clients_and_garbage_do_not_hang(server: Server) -> None:
    assert b" 411 " in _raw(server, b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    # promises 100 bytes, sends 5, then waits: the read timeout (1 s here) answers instead of hanging
    cut = b"POST /v1/models/tiny:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"in"
    assert _raw(server, cut).startswith(b"HTTP/1.1 4")
    assert b'"error"' in _raw(server, b"\x16\x03\x01 not http at all\r\n\r\n")


@pytest.mark.slow
def test_concurrent_requests_get_their_own_answers(server: Server, predictor: Any) -> None:
    def one(i: int) -> tuple[int, Any]:
        z = [i / 10.0] * E
        return i, post(server, {"instances": [{"embeddings": z, "key": f"k{i}"}] * 3})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(24)))
    for i, (status, body) in results:
        assert status == 200
        assert [p["key"] for p in body["predictions"]] == [f"k{i}"] * 3
        want = predictor.predict([{"embeddings": [i / 10.0] * E, "key": "x"}])[0]["image_bytes"]
        assert body["predictions"][0]["image_bytes"] == want


@pytest.mark.slow
def test_token_is_required_when_set(predictor: Any) -> None:
    s = make_server(predictor, "tiny", "127.0.0.1", 0, token="s3cret")
    t = _start(s)
    try:
        body = {"instances": [{"embeddings": Z, "key": "a"}]}
        assert post(s, body)[0] == 401
        assert post(s, body, Authorization="Bearer wrong")[0] == 401
        assert post(s, body, Authorization="Bearer s3cret")[0] == 200
        assert call(s, "GET", "/healthz")[0] == 200               # health stays open for probes
    finally:
        s.stop()
        t.join()


def test_non_loopback_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("10.1.2.3")
    with pytest.raises(InvalidInput, match="without a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "token")


methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])
paths = st.sampled_from(["/v1/models/tiny:predict", "/v1/models/tiny", "/healthz", "/v1/models/tiny/versions/1:predict",
                         "/v1/models/tiny/versions/x:predict", "/v1/models/:predict", "/v1/models/tiny:predict?x=1"]) \
    | st.text(alphabet="/abcv1:?%.-_ ", max_size=30).map(lambda p: "/" + p.replace(" ", "%20"))
json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
json_any = st.recursive(json_leaf,
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                    max_size=4),
                        max_leaves=15)
instance = st.fixed_dictionaries({}, optional={"embeddings": st.lists(st.floats(width=32), max_size=9) | json_any,
                                               "key": st.text(max_size=4) | json_any,
                                               "image_bytes": st.fixed_dictionaries({"b64": st.text(max_size=8)})
                                               | json_any})
bodies = (st.binary(max_size=200)
          | json_any.map(lambda o: json.dumps(o).encode())
          | st.lists(instance | json_any, max_size=4).map(lambda xs: json.dumps({"instances": xs}).encode()))


@pytest.mark.slow
@given(methods, paths, bodies)
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_no_request_gets_a_500_or_a_non_json_answer(server: Server, method: str, path: str, body: bytes) -> None:
    status, obj = call(server, method, path, body if method not in ("GET", "HEAD") else None)
    assert status in (200, 400, 401, 404, 405, 411, 413), (status, obj)
    if method != "HEAD":
        assert isinstance(obj, dict)
        assert ("error" in obj) == (status != 200) or "predictions" in obj
    if status == 200 and obj and "predictions" in obj:
        assert any("error" not in p for p in obj["predictions"])


@pytest.mark.slow
def test_b64_image_round_trip(server: Server) -> None:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (30, 24), (10, 200, 40)).save(buf, format="JPEG")
    status, body = post(server, {"instances": [{"image_bytes": {"b64": base64.b64encode(buf.getvalue()).decode()},
                                                "key": "img"}]})
    assert status == 200 and len(body["predictions"][0]["embeddings"]) == E


@pytest.mark.slow
def test_stop_does_not_wait_for_idle_keep_alive_clients(predictor: Any) -> None:
    import time
    s = make_server(predictor, "tiny", "127.0.0.1", 0)             # the 30 s read timeout
    t = _start(s)
    idle = http.client.HTTPConnection(*s.server_address[:2], timeout=30)
    idle.request("GET", "/healthz")
    assert idle.getresponse().read()                                 # connection stays open (HTTP/1.1)
    started = time.monotonic()
    s.stop()
    t.join()
    assert time.monotonic() - started < 10
    idle.close()
