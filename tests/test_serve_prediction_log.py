"The prediction log in a real `prodkit serve` process on a loopback port: sampled rows, pii hashed, a SIGKILL loses at most a batch, drift on /metrics"
import os, signal, time
import httpx
import numpy as np
import pandas as pd
import pytest
from serving import RECORD, free_port, tiny_onnx, start_process, stop_process

pytestmark = pytest.mark.slow
V2 = "/v2/models/prodkit/infer"
FEATS = ["f0", "f1", "f2", "f3"]

def registry_with_reference(path):
    "A real registry whose production version carries reference statistics of standard-normal features"
    from prodkit.monitoring.drift import reference_from_frame
    from prodkit.release.registry import ModelRegistry
    rng = np.random.default_rng(0)
    ref = reference_from_frame(pd.DataFrame(rng.normal(size=(2000, 4)), columns=FEATS).assign(target=0), "target")
    from prodkit.core.config import compose
    reg = ModelRegistry(path, compose().registry.model); reg.register(tiny_onnx(seed=0), reference_stats=ref); reg.promote(1)
    return reg

def until(cond, timeout=20.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if (v := cond()) is not None and v is not False: return v
        time.sleep(0.1)
    raise TimeoutError("condition not met in time")

def rows_logged(d):
    from prodkit.monitoring.prediction_log import PredictionLogError, read_log
    try: return read_log(d)
    except PredictionLogError: return None

@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_requests_logged_pii_hashed_and_a_kill_loses_at_most_a_batch(tmp_path, fmt):
    reg, d = registry_with_reference(tmp_path/"registry"), tmp_path/"plog"
    proc, url = start_process([f"serve.registry={reg.path}", "serve.poll_seconds=0.2", "serve.log.enabled=true", f"serve.log.dir={d}",
                               f"serve.log.format={fmt}", "serve.log.sample=1.0", "serve.log.batch_size=5", "serve.log.flush_seconds=3600",
                               "serve.log.pii=[f1]"], free_port(), tmp_path/"server.log")
    try:
        ids = []
        for i in range(23):   # 4 whole batches of 5 rows, 3 rows left in memory
            if i % 2: r = httpx.post(url + "/predict", json={**RECORD, "f0": float(i)}, headers={"authorization": "Bearer sk-secret-123"})
            else: r = httpx.post(url + V2, json={"id": f"req{i}", "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [float(i), 1, -0.5, 2]}]})
            assert r.status_code == 200, r.text
            ids.append(r.headers["x-request-id"])
        assert ids[0] == "req0" and len(ids[1]) == 32
        until(lambda: (f := rows_logged(d)) is not None and len(f) >= 20)
    finally:
        os.kill(proc.pid, signal.SIGKILL); proc.wait(10)
    frame = rows_logged(d)
    assert len(frame) == 20, len(frame)             # every written batch whole; only the 3 rows in memory are lost
    assert frame["request_id"].tolist() == ids[:20] and frame["f0"].tolist() == [float(i) for i in range(20)]
    assert set(frame.columns) == {"request_id", "row", "time", "model_version", "f0", "f1", "f2", "f3", "prediction", "confidence", "proba_0", "proba_1"}
    assert (frame["model_version"] == "1").all() and frame["f1"].str.startswith("sha256:").all()
    assert frame["prediction"].isin(["0", "1"]).all() and ((frame["confidence"] >= 0.5) & (frame["confidence"] <= 1)).all()
    text = "".join(p.read_bytes().decode(errors="replace") for p in d.iterdir())
    assert "sk-secret" not in text and "Bearer" not in text and "authorization" not in text.lower()

def test_drift_gauges_after_shifted_requests_and_sigterm_writes_the_rest(tmp_path):
    reg, d = registry_with_reference(tmp_path/"registry"), tmp_path/"plog"
    proc, url = start_process([f"serve.registry={reg.path}", "serve.poll_seconds=0.2", "serve.log.enabled=true", f"serve.log.dir={d}",
                               "serve.log.sample=1.0", "serve.log.batch_size=50", "serve.log.flush_seconds=0.5", "serve.log.drift_seconds=0.2",
                               "serve.log.drift_window=200", "serve.log.pii=[f3]", "serve.log.pii_mode=drop"], free_port(), tmp_path/"server.log")
    try:
        assert "prodkit_drift_status -1.0" in httpx.get(url + "/metrics").text   # nothing logged yet
        rng = np.random.default_rng(1)
        for _ in range(10):   # 200 rows, f0 shifted by 3 standard deviations
            x = rng.normal(size=(20, 4)) + [3, 0, 0, 0]
            assert httpx.post(url + "/predict", json=[dict(zip(FEATS, r)) for r in x.tolist()]).status_code == 200
        def alert():
            t = httpx.get(url + "/metrics").text
            return t if "prodkit_drift_status 2.0" in t else None
        m = until(alert)
        psi = {l.split('"')[1]: float(l.split()[-1]) for l in m.splitlines() if l.startswith("prodkit_drift_psi{")}
        assert psi["f0"] > 1 and "f3" not in psi and float(m.split("\nprodkit_drift_share ")[1].split()[0]) > 0
        assert httpx.post(url + "/predict", json=RECORD).status_code == 200   # one row left in memory ...
    finally:
        assert stop_process(proc) == 0
    frame = rows_logged(d)
    assert len(frame) == 201 and "f3" not in frame                              # ... written on SIGTERM
