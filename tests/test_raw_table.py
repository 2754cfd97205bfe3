"A user's table as it is: string labels, categorical and missing values go in raw; the released ONNX file holds the preprocessing."
import json
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run
from prodkit.release.onnx import ort_session, read_onnx_metadata
from prodkit.release.registry import ModelRegistry

PRODKIT = ROOT/".venv/bin/prodkit"

@pytest.fixture(scope="module")
def released(tmp_path_factory):
    "penguins from the raw CSV: a tiny train run, then a release (gates off: a 2-epoch model is not a good one)"
    d = tmp_path_factory.mktemp("penguins")
    base = [f"paths.runs_dir={d/'runs'}", f"paths.data_dir={d/'data'}", "data=penguins", "tracking.mode=disabled"]
    r = run(PRODKIT, "run", "-q", "train", *base, "debug=tiny", cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(PRODKIT, "release", *base, f"registry.path={d/'registry'}", "gates.only=['parity_max_abs <= 1e-4']", "export.speed.repeats=5", "--quiet", cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    return d

@pytest.mark.slow
def test_the_released_file_takes_the_raw_columns_and_speaks_class_names(released):
    v = ModelRegistry(released/"registry").get("production")
    meta = read_onnx_metadata(ModelRegistry(released/"registry").onnx_bytes(v.version))
    assert meta["output"]["labels"] == ["Adelie", "Chinstrap", "Gentoo"]
    cols = {c["name"]: c for c in meta["input"]["columns"]}
    assert cols["island"]["dtype"] == "string" and sorted(cols["island"]["categories"]) == ["Biscoe", "Dream", "Torgersen"]
    assert cols["sex"]["nullable"] and cols["bill_length_mm"]["nullable"] and "year" not in cols and "species" not in cols
    inputs = {i.name: i.type for i in ort_session(ModelRegistry(released/"registry").onnx_bytes(v.version)).get_inputs()}
    assert inputs["island"] == "tensor(string)" and inputs["body_mass_g"] == "tensor(float)"
    assert v.parity["passed"] and v.parity["max_abs"] < 1e-5       # parity was checked on rows with unseen categories and missing values
    assert sorted(r["feature"] for r in v.explanations["importance"]["features"]) == sorted(cols)   # one entry per raw column: island is one

@pytest.mark.slow
@pytest.mark.serving
def test_batch_inference_scores_the_raw_file_unseen_categories_and_missing_values_included(released):
    raw = pd.read_csv(released/"data"/"penguins.csv").drop(columns=["species"])
    raw.loc[0, "island"] = "Atlantis"                           # never seen in training: answered, not refused
    raw.loc[1, ["sex", "bill_length_mm"]] = None                # missing where the schema says nullable: imputed inside the model
    raw["body_mass_g"] = raw["body_mass_g"].astype(object); raw.loc[2, "body_mass_g"] = "heavy"   # a string in a numeric column: refused
    raw.to_csv(released/"raw.csv", index=False)
    r = run(PRODKIT, "infer", released/"raw.csv", released/"preds.csv", "-m", "production", "--registry", released/"registry", "-q",
            f"paths.runs_dir={released/'runs'}", cwd=released)
    assert r.returncode == 0, r.stdout + r.stderr
    preds = pd.read_csv(released/"preds.csv")
    assert [c for c in preds.columns if c.startswith("proba_")] == ["proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]
    assert {0, 1} <= set(preds["row"]) and 2 not in set(preds["row"]) and len(preds) == len(raw) - 1
    assert set(preds["label"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    np.testing.assert_allclose(preds[["proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]].sum(axis=1), 1, atol=1e-5)
    summary = json.loads((released/"preds.csv.summary.json").read_text())
    assert (summary["quarantined"], summary["reasons"]) == (1, {"body_mass_g: not a number": 1}), summary

@pytest.mark.slow
@pytest.mark.serving
def test_the_service_answers_raw_records_and_v2_columns_and_its_log_drift_checks(released):
    "Unseen categories and missing values on a real server; class names through the response, the prediction log and drift"
    import httpx
    from serving import serve_config, thread_server
    from prodkit.monitoring.prediction_log import read_log
    base = serve_config()
    cfg = serve_config(registry=str(released/"registry"), poll_seconds=0.2,
                       log={**base["log"], "enabled": True, "dir": str(released/"plog"), "sample": 1.0, "batch_size": 1, "flush_seconds": 0})
    raw = pd.read_csv(released/"data"/"penguins.csv").drop(columns=["species", "year"])
    records = json.loads(raw.head(40).to_json(orient="records"))     # NaN as null, as a JSON client sends it
    unseen = {**records[0], "island": "Atlantis", "sex": None, "bill_length_mm": None}
    with thread_server(cfg) as url:
        r = httpx.post(url + "/predict", json=[unseen, *records[1:]])
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert len(preds) == 40 and {p["label"] for p in preds} <= {"Adelie", "Chinstrap", "Gentoo"}
        assert set(preds[0]["probabilities"]) == {"Adelie", "Chinstrap", "Gentoo"}
        bad = httpx.post(url + "/predict", json=[records[1], {**records[2], "body_mass_g": "heavy"}])
        assert bad.status_code == 422 and "record 1: feature 'body_mass_g' is str \"heavy\", expected a number" in bad.json()["error"], bad.text
        missing = httpx.post(url + "/predict", json={**records[1], "island": None})
        assert missing.status_code == 422 and "'island' is null, expected a string" in missing.json()["error"], missing.text
        meta = httpx.get(url + "/v2/models/prodkit").json()
        assert {i["name"]: i["datatype"] for i in meta["inputs"]}["island"] == "BYTES" and meta["parameters"]["labels"] == ["Adelie", "Chinstrap", "Gentoo"]
        col = lambda f, dt: {"name": f, "shape": [2], "datatype": dt, "data": [unseen[f], records[1][f]]}
        v2 = httpx.post(url + "/v2/models/prodkit/infer", json={"inputs": [col(i["name"], i["datatype"]) for i in meta["inputs"]]})
        assert v2.status_code == 200, v2.text
        out = {o["name"]: o for o in v2.json()["outputs"]}
        assert out["label"]["data"] == [preds[0]["label"], preds[1]["label"]] and out["probabilities"]["shape"] == [2, 3]
        np.testing.assert_allclose(out["probabilities"]["data"][:3], [preds[0]["probabilities"][k] for k in ("Adelie", "Chinstrap", "Gentoo")], atol=1e-6)
    log = read_log(released/"plog")
    assert len(log) == 42 and log["prediction"].isin(["Adelie", "Chinstrap", "Gentoo"]).all(), log
    assert {"proba_Adelie", "proba_Chinstrap", "proba_Gentoo", "island", "sex"} <= set(log.columns)
    assert log.loc[0, "island"] == "Atlantis" and log["sex"].isna().iloc[0] and log["bill_length_mm"].isna().iloc[0]
    r = run(PRODKIT, "drift", "production", released/"plog", "--registry", released/"registry", "--runs-dir", released/"runs",
            "--out", released/"drift", "--json", cwd=released)
    assert r.returncode in (0, 1, 2), r.stdout + r.stderr          # 0 none, 1 warn, 2 alert: a verdict, not a crash
    report = json.loads(r.stdout)
    assert "year" not in {f["name"] for f in report["features"]}    # data.exclude: never logged, so not compared
    island = next(f for f in report["features"] if f["name"] == "island")
    assert island["kind"] == "categorical" and any("Atlantis" in why for why in island["reasons"]) and island["unseen"] > 0, island
    prediction = next(f for f in report["outputs"] if f["name"] == "prediction")
    assert set(prediction["plot"]["labels"]) <= {"Adelie", "Chinstrap", "Gentoo"}, prediction    # the reference's shares speak class names too
