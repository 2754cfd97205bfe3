"Fallbacks on a real registry (corrupt production -> previous -> baseline, or not ready), recovery, canary, and SIGTERM"
import threading, time
import httpx
import pytest
from serving import RECORD, free_port, make_registry, serve_config, start_process, stop_process, thread_server

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    return make_registry(tmp_path_factory.mktemp("fb")/"registry", n_versions=3, promote=(1, 2))   # production v2, previous v1, candidate v3

def corrupt(reg, v: int) -> bytes:
    p = reg.blobs.path(reg.get(v).onnx_sha256); good = p.read_bytes(); p.write_bytes(good[:100]); return good

def restore(reg, v: int, good: bytes) -> None: reg.blobs.path(reg.get(v).onnx_sha256).write_bytes(good)

def test_fallback_chain(reg):
    rule = {"rules": [{"feature": "f0", "above": 0.0, "label": "1"}], "default": "0", "confidence": 0.7}
    good2 = corrupt(reg, 2)
    try:
        with thread_server(serve_config(registry=str(reg.path), poll_seconds=0.2, baseline=rule)) as url:
            r = httpx.post(url + "/predict", json=RECORD).json()       # production v2 is corrupt: previous v1 answers
            assert (r["model_version"], r["fallback"]) == (1, True) and "production v2 failed to load: ModelIntegrityError" in r["reason"], r
            assert "corrupt" in r["reason"] and "answering with previous v1" in r["reason"]
            v = httpx.post(url + "/v2/models/prodkit/infer", json={"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}).json()
            assert v["model_version"] == "1" and v["parameters"]["fallback"] is True
            assert 'prodkit_fallbacks_total{reason="previous_model"} 2.0' in httpx.get(url + "/metrics").text
            restore(reg, 2, good2)                                      # repaired: the next poll serves production again
            t0 = time.monotonic()
            while httpx.post(url + "/predict", json=RECORD).json()["model_version"] != 2: assert time.monotonic() - t0 < 5; time.sleep(0.05)
            assert httpx.post(url + "/predict", json=RECORD).json()["fallback"] is False
        good1 = corrupt(reg, 1); corrupt(reg, 2)
        try:
            with thread_server(serve_config(registry=str(reg.path), baseline=rule)) as url:   # nothing loads: the baseline answers
                r = httpx.post(url + "/predict", json=[RECORD, {**RECORD, "f0": -1.0}]).json()
                assert r["model_version"] is None and r["fallback"] and "the rule-based baseline answers" in r["reason"]
                assert [p["label"] for p in r["predictions"]] == ["1", "0"] and r["predictions"][0]["confidence"] == pytest.approx(0.7)
                assert httpx.get(url + "/v2/health/ready").json()["role"] == "baseline"
                assert 'prodkit_fallbacks_total{reason="baseline"} 1.0' in httpx.get(url + "/metrics").text
            with thread_server(serve_config(registry=str(reg.path), on_no_model="unready")) as url:   # or: not ready
                r = httpx.get(url + "/v2/health/ready"); assert r.status_code == 503 and not r.json()["ready"]
                r = httpx.post(url + "/predict", json=RECORD); assert r.status_code == 503 and "previous v1 failed to load" in r.json()["error"]
        finally: restore(reg, 1, good1)
    finally: restore(reg, 2, good2)

def test_low_confidence_and_canary(reg):
    with thread_server(serve_config(registry=str(reg.path), confidence_threshold=0.999, low_confidence="baseline", canary_share=0.5)) as url:
        rs = [httpx.post(url + "/predict", json=RECORD).json() for _ in range(40)]
        assert all(p["low_confidence"] for r in rs for p in r["predictions"])          # a small model is never 99.9% sure
        assert all(r["fallback"] and "below confidence 0.999" in r["reason"] for r in rs)
        assert {r["model_version"] for r in rs} == {2, 3} and {r["canary"] for r in rs} == {True, False}   # canary: candidate v3
        m = httpx.get(url + "/metrics").text
        assert 'prodkit_model_version{role="canary"} 3.0' in m and 'prodkit_prediction_confidence_count{version="3"}' in m
        low = {v: float(m.split(f'prodkit_low_confidence_total{{version="{v}"}} ')[1].split()[0]) for v in (2, 3)}
        assert sum(low.values()) == 40 and all(low.values()), low                   # counted by the version that was unsure

def test_low_confidence_flagged_only(reg):
    "With low_confidence=flag (the default) the model's answer stands, flagged, and is counted; it is not a fallback"
    with thread_server(serve_config(registry=str(reg.path), confidence_threshold=0.999)) as url:
        rs = [httpx.post(url + "/predict", json=[RECORD, RECORD]).json() for _ in range(5)]
        assert all(p["low_confidence"] for r in rs for p in r["predictions"]) and not any(r["fallback"] for r in rs)
        assert {r["model_version"] for r in rs} == {2}
        v2 = httpx.post(url + "/v2/models/prodkit/infer", json={"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                                                         "data": list(RECORD.values())}]}).json()
        assert v2["parameters"]["low_confidence"] == [True] and v2["parameters"]["fallback"] is False
        m = httpx.get(url + "/metrics").text
        assert 'prodkit_low_confidence_total{version="2"} 11.0' in m and "prodkit_fallbacks_total{" not in m

def test_sigterm_finishes_requests_in_flight(reg, tmp_path):
    proc, url = start_process([f"serve.registry={reg.path}"], free_port(), tmp_path/"server.log")
    result, sent = {}, threading.Event()
    def slow_body():                                               # a request still uploading when SIGTERM arrives
        yield b'{"f0": 0.1, '
        sent.set()                                                 # resumed: the first chunk is on the wire
        for _ in range(8): time.sleep(0.1); yield b" "
        yield b'"f1": 1.0, "f2": -0.5, "f3": 2.0}'
    def send():
        try: result["r"] = httpx.post(url + "/predict", content=slow_body(), headers={"content-type": "application/json"}, timeout=20)
        except Exception as e: result["e"] = e
    t = threading.Thread(target=send); t.start()
    assert sent.wait(10); time.sleep(0.2)                          # the server has the request in hand
    t0 = time.monotonic(); code = stop_process(proc); took = time.monotonic() - t0
    t.join(20)
    assert "e" not in result, result
    assert result["r"].status_code == 200 and result["r"].json()["model_version"] == 2
    assert code == 0 and took < 10, (code, took)
    assert "Finished server process" in (tmp_path/"server.log").read_text()
    with pytest.raises(httpx.TransportError): httpx.get(url + "/v2/health/live", timeout=1)

def test_two_workers_answer_and_stop_on_sigterm(reg, tmp_path):
    "`--workers 2`: both processes load the model and answer; SIGTERM to the parent stops them all"
    import psutil
    proc, url = start_process([f"serve.registry={reg.path}", "--workers", "2"], free_port(), tmp_path/"server.log")
    try:
        t0 = time.monotonic()
        while len(psutil.Process(proc.pid).children()) < 2: assert time.monotonic() - t0 < 30; time.sleep(0.1)
        children = [c.pid for c in psutil.Process(proc.pid).children()]
        with httpx.Client(base_url=url) as c:
            rs = [c.post("/predict", json=RECORD) for _ in range(20)]
        assert {r.status_code for r in rs} == {200} and {r.json()["model_version"] for r in rs} == {2}
    finally: code = stop_process(proc)
    assert code == 0, (tmp_path/"server.log").read_text()[-2000:]
    def alive(): return [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    deadline = time.monotonic() + 10                      # workers exit right after the parent, not at the same instant
    while alive() and time.monotonic() < deadline: time.sleep(0.1)
    assert not alive()
