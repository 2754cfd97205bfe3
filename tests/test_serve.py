"The online service against a real `prodkit serve` process on a loopback port: bad input refused, metrics, hot swap"
import json, threading, time
import httpx
import pytest
from serving import RECORD, make_registry, start_process, stop_process

pytestmark = pytest.mark.slow
V2 = "/v2/models/prodkit/infer"

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    reg = make_registry(d/"registry", n_versions=2, promote=(1,))        # production v1, candidate v2
    from serving import free_port
    proc, url = start_process([f"serve.registry={reg.path}", "serve.poll_seconds=0.2", "serve.max_batch=8", "serve.max_body_bytes=4096"],
                              free_port(), d/"server.log")
    yield url, reg, proc
    stop_process(proc)

def test_routes(server):
    url, reg, _ = server
    assert httpx.get(url + "/v2/health/live").json() == {"live": True}
    r = httpx.get(url + "/v2/health/ready"); assert r.status_code == 200 and r.json()["ready"] and r.json()["model_version"] == 1
    meta = httpx.get(url + "/v2/models/prodkit").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}] and meta["parameters"]["features"] == ["f0", "f1", "f2", "f3"]
    assert meta["parameters"]["aliases"] == {"candidate": 2, "production": 1} and meta["versions"] == ["1", "2"]
    p = httpx.post(url + "/predict", json=[RECORD, RECORD]).json()
    assert p["model_version"] == 1 and not p["fallback"] and len(p["predictions"]) == 2
    assert abs(sum(p["predictions"][0]["probabilities"].values()) - 1) < 1e-5
    v = httpx.post(url + V2, json={"id": "a", "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 1, -0.5, 2]}]}).json()
    assert v["model_version"] == "1" and v["id"] == "a" and abs(v["outputs"][0]["data"][1] - p["predictions"][0]["probabilities"]["1"]) < 1e-6
    cols = {"inputs": [{"name": f, "shape": [1], "datatype": "FP64", "data": [RECORD[f]]} for f in ["f3", "f2", "f1", "f0"]]}   # per feature, any order
    assert httpx.post(url + V2, json=cols).json()["outputs"][0]["data"] == v["outputs"][0]["data"]

def raw(s: str) -> dict: return {"content": s.encode(), "headers": {"content-type": "application/json"}}
T = lambda data, shape=(1, 4), name="input", dt="FP32": {"json": {"inputs": [{"name": name, "shape": list(shape), "datatype": dt, "data": data}]}}

BAD = [  # route, request kwargs, status, what the message must say
    ("/predict", {"json": {"f0": 1, "f1": 1, "f2": 1}}, 422, "record 0: missing feature(s) ['f3']"),
    ("/predict", {"json": [RECORD, {**RECORD, "zz": 1}]}, 422, "record 1: unknown feature(s) ['zz']"),
    ("/predict", {"json": {**RECORD, "f1": "1.5"}}, 422, "record 0: feature 'f1' is str \"1.5\", expected a number"),
    ("/predict", {"json": {**RECORD, "f1": None}}, 422, "record 0: feature 'f1' is NoneType null"),
    ("/predict", {"json": [RECORD, 3]}, 422, "record 1 is a int"),
    ("/predict", raw('[{"f0": 1, "f1": 1, "f2": 1, "f3": 1}, {"f0": NaN, "f1": 1, "f2": 1, "f3": 1}]'), 422, "row 1: feature 'f0' is NaN"),
    ("/predict", raw('{"f0": 1, "f1": Infinity, "f2": 1, "f3": 1}'), 422, "row 0: feature 'f1' is inf"),
    ("/predict", raw('{"f0": 1%s, "f1": 1, "f2": 1, "f3": 1}' % ("0" * 400)), 422, "record 0: feature 'f0' is an integer of 401 digits"),
    ("/predict", {"json": {**RECORD, "f2": 1e39}}, 422, "row 0: feature 'f2' is 1e+39, beyond float32's range"),
    ("/predict", {"json": []}, 422, "empty batch"),
    ("/predict", {"json": [RECORD] * 9}, 413, "batch of 9 records is over the limit of 8"),
    ("/predict", raw(json.dumps([RECORD] * 5) + " " * 4096), 413, "over the limit of 4096 bytes"),
    ("/predict", raw('{"f0": 1,'), 400, "malformed JSON"),
    ("/predict", raw(""), 400, "empty request body"),
    (V2, T([1, 2, 3], shape=(1, 3)), 422, "shape [1, 3]: the model takes [batch, 4]"),
    (V2, T([1, 2, 3, 4, 5, 6], shape=(2, 4)), 422, "shape [2, 4] needs 8 values, data has 6"),
    (V2, T([1, 2, 3], shape=(3,)), 422, "shape [3] is not a list of 2 sizes"),
    (V2, T(["a", "b", "c", "d"]), 422, "data holds non-numbers"),
    (V2, T([True, 1, 1, 1]), 422, "data holds true/false"),
    (V2, raw('{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1%s, 1, 1, 1]}]}' % ("0" * 400)), 422, "integer beyond float32's range"),
    (V2, T([1e39, 1, 1, 1]), 422, "row 0: feature 'f0' is 1e+39, beyond float32's range"),
    (V2, T([1, 2, 3, 4], dt="BYTES"), 422, "datatype 'BYTES' is not numeric"),
    (V2, T([], shape=(0, 4)), 422, "empty batch"),
    (V2, T([0.0] * 36, shape=(9, 4)), 413, "batch of 9 rows is over the limit of 8"),
    (V2, T([1, 2, 3, 4], name="x"), 422, "missing input(s) ['f0', 'f1', 'f2', 'f3']; unknown input(s) ['x']"),
    (V2, raw('{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, NaN, 1, 1]}]}'), 422, "row 0: feature 'f1' is NaN"),
    (V2, {"json": {"nope": 1}}, 400, "expected a JSON object with 'inputs'"),
    ("/v2/models/other/infer", T([1, 2, 3, 4]), 404, "no model 'other'"),
]

@pytest.mark.parametrize("route,kw,status,msg", BAD, ids=[f"{i}-{b[3][:30]}" for i, b in enumerate(BAD)])
def test_bad_input_refused(server, route, kw, status, msg):
    url = server[0]
    r = httpx.post(url + route, timeout=10, **kw)
    assert r.status_code == status, r.text
    assert msg in r.json()["error"], r.json()

def test_still_up_and_counted(server):
    url, _, proc = server
    assert proc.poll() is None and httpx.post(url + "/predict", json=RECORD).status_code == 200
    for route, kw in [("/predict", {"json": [RECORD] * 9}), ("/predict", {"json": [{}]}), (V2, {"json": {"nope": 1}})]:
        assert httpx.post(url + route, timeout=10, **kw).status_code in (400, 413, 422)   # counted, whichever worker ran BAD
    m = httpx.get(url + "/metrics").text
    for line in ['prodkit_requests_total{route="/predict",status="422"}', 'prodkit_requests_total{route="/predict",status="413"}',
                 'prodkit_requests_total{route="/v2/models/{name}/infer",status="400"}', 'prodkit_request_duration_seconds_bucket{le="0.005",route="/predict"}',
                 'prodkit_predictions_total{label=', 'prodkit_prediction_confidence_bucket', 'prodkit_model_version{role="serving"} 1.0',
                 "process_cpu_seconds_total", "process_resident_memory_bytes"]:
        assert line in m, line

def test_hot_swap_under_load(server):
    "Promote and roll back while 4 clients send requests: no request fails, each answer names its version, both versions answer"
    url, reg, _ = server
    seen, stop, errors = [], threading.Event(), []
    def client():
        with httpx.Client(base_url=url, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post("/predict", json=RECORD)
                    seen.append((time.monotonic(), r.status_code, r.json().get("model_version")))
                except Exception as e: errors.append(repr(e))
    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads: t.start()
    def wait_for(version, timeout=10):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if seen and seen[-1][2] == version: return time.monotonic() - t0
            time.sleep(0.02)
        raise AssertionError(f"v{version} not served within {timeout} s")
    try:
        time.sleep(0.3); reg.promote(2); swap = wait_for(2)
        time.sleep(0.3); reg.rollback(); back = wait_for(1); time.sleep(0.3)
    finally:
        stop.set()
        for t in threads: t.join(15)
    assert not errors, errors[:3]
    assert {s for _, s, _ in seen} == {200}, [x for x in seen if x[1] != 200][:3]
    assert {v for *_, v in seen} == {1, 2} and len(seen) > 50
    assert swap < 5 and back < 5
