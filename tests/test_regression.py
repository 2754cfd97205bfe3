"A regression target end to end: sklearn's diabetes table trains, releases (regression gates), scores in batch, serves and drift-checks."
import json
import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run
from prodkit.release.onnx import ort_session, read_onnx_metadata
from prodkit.release.registry import ModelRegistry

PRODKIT = ROOT/".venv/bin/prodkit"
pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def released(tmp_path_factory):
    "experiment=diabetes: a full train run (about 10 s), released through conf/gates/regression.yaml into its own registry"
    d = tmp_path_factory.mktemp("diabetes")
    base = ["experiment=diabetes", f"paths.runs_dir={d/'runs'}", f"paths.data_dir={d/'data'}", f"registry.path={d/'registry'}", "tracking.mode=disabled"]
    r = run(PRODKIT, "run", "-q", "train", *base, "train.progress=false", cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(PRODKIT, "release", *base, "export.speed.repeats=5", "--quiet", cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr        # promoted: every regression gate passed
    return d

def test_the_released_model_answers_in_the_targets_units_and_passed_the_regression_gates(released):
    reg = ModelRegistry(released/"registry")
    v = reg.get("production")
    assert {g["metric"] for g in v.gates} >= {"r2", "mae"} and all(g["passed"] for g in v.gates), v.gates
    assert v.metrics["r2"] >= 0.3 and v.metrics["mae"] <= 55 and "accuracy" not in v.metrics
    meta = read_onnx_metadata(reg.onnx_bytes(v.version))
    assert meta["output"]["task"] == "regression" and meta["output"]["labels"] == [] and 100 < meta["output"]["target_stats"]["median"] < 200
    assert [o.name for o in ort_session(reg.onnx_bytes(v.version)).get_outputs()] == ["prediction"]
    assert {c["name"]: c["dtype"] for c in meta["input"]["columns"]}["sex"] == "string"     # category: true on a column of numbers
    assert v.reference_stats["outputs"]["prediction"]["mean"] > 0                          # output drift compares predicted values
    assert v.parity["passed"]

@pytest.mark.serving
def test_batch_output_serve_log_and_drift(released):
    from serving import serve_config, thread_server
    raw = pd.read_csv(released/"data"/"diabetes.csv")
    raw.drop(columns=["target"]).to_csv(released/"in.csv", index=False)
    r = run(PRODKIT, "infer", released/"in.csv", released/"preds.csv", "-m", "production", "--registry", released/"registry", "-q",
            f"paths.runs_dir={released/'runs'}", cwd=released)
    assert r.returncode == 0, r.stdout + r.stderr
    preds = pd.read_csv(released/"preds.csv")
    assert list(preds.columns) == ["row", "prediction", "model_version"] and len(preds) == len(raw)
    assert np.mean(np.abs(preds["prediction"] - raw["target"])) < 60                       # in the target's units (the spread is about 77)

    base = serve_config()
    cfg = serve_config(registry=str(released/"registry"), poll_seconds=0.2, confidence_threshold=0.6,
                       log={**base["log"], "enabled": True, "dir": str(released/"plog"), "sample": 1.0, "batch_size": 1, "flush_seconds": 0})
    records = json.loads(raw.drop(columns=["target"]).head(50).to_json(orient="records"))
    with thread_server(cfg) as url:
        r = httpx.post(url + "/predict", json=records)
        assert r.status_code == 200, r.text
        values = [p["value"] for p in r.json()["predictions"]]
        np.testing.assert_allclose(values, preds["prediction"][:50], rtol=1e-5)            # the service and the batch job agree
        assert "low_confidence" not in r.text and not r.json()["fallback"]                 # a value has no confidence to flag
        meta = httpx.get(url + "/v2/models/prodkit").json()
        assert meta["outputs"] == [{"name": "prediction", "datatype": "FP32", "shape": [-1, 1]}] and meta["parameters"]["task"] == "regression"
        cols = [{"name": i["name"], "datatype": i["datatype"], "shape": [2],
                 "data": [str(int(x[i["name"]])) if i["datatype"] == "BYTES" else x[i["name"]] for x in records[:2]]} for i in meta["inputs"]]
        v2 = httpx.post(url + "/v2/models/prodkit/infer", json={"inputs": cols})
        assert v2.status_code == 200, v2.text
        out = v2.json()["outputs"]
        assert [o["name"] for o in out] == ["prediction"] and out[0]["shape"] == [2, 1]
        np.testing.assert_allclose(out[0]["data"], values[:2], rtol=1e-5)
        bad = httpx.post(url + "/predict", json={**records[0], "bmi": "fat"})
        assert bad.status_code == 422 and "feature 'bmi' is str" in bad.json()["error"]
    r = run(PRODKIT, "drift", "production", released/"plog", "--registry", released/"registry", "--runs-dir", released/"runs",
            "--out", released/"drift", "--json", cwd=released)
    assert r.returncode == 0, r.stdout + r.stderr                                           # the same population: no drift
    report = json.loads(r.stdout)
    out = {o["name"]: o for o in report["outputs"]}
    assert out["prediction"]["kind"] == "numeric" and out["prediction"]["psi"] is not None, out

@pytest.mark.serving
def test_importance_travels_with_the_version_and_explain_names_the_columns(released):
    v = ModelRegistry(released/"registry").get("production")
    imp = v.explanations["importance"]
    assert imp["metric"] == "mae" and len(imp["features"]) == 10 and imp["features"][0]["mean"] > 0, imp
    run_dir = next((released/"runs"/"train").glob("*/importance.json")).parent
    assert json.loads((run_dir/"importance.json").read_text()) == imp and (run_dir/"importance.png").stat().st_size > 1000
    r = run(PRODKIT, "explain", "production", released/"data"/"diabetes.csv", "--registry", released/"registry", "-n", "2",
            "-o", released/"effects.csv", cwd=released)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "442 row(s) explained" in r.stdout and r.stdout.count("  row ") == 2, r.stdout     # -n 2: two printed, all in the file
    effects = pd.read_csv(released/"effects.csv")
    assert len(effects) == 442 and {f"effect_{c}" for c in ("age", "sex", "bmi")} <= set(effects.columns)
    r = run(PRODKIT, "explain", "production", released/"nope.csv", "--registry", released/"registry", cwd=released)
    assert r.returncode == 1 and "nope.csv does not exist" in r.stderr, r.stderr
