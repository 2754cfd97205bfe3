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
    r = run(PRODKIT, "release", *base, f"registry.path={d/'registry'}", "gates.rules=['parity_max_abs <= 1e-4']", "export.speed.repeats=5", "--quiet", cwd=d)
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

@pytest.mark.slow
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
    assert [c for c in preds.columns if c.startswith("p_")] == ["p_Adelie", "p_Chinstrap", "p_Gentoo"]
    assert {0, 1} <= set(preds["row"]) and 2 not in set(preds["row"]) and len(preds) == len(raw) - 1
    assert set(preds["label"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    np.testing.assert_allclose(preds[["p_Adelie", "p_Chinstrap", "p_Gentoo"]].sum(axis=1), 1, atol=1e-5)
    summary = json.loads((released/"preds.csv.summary.json").read_text())
    assert (summary["quarantined"], summary["reasons"]) == (1, {"body_mass_g: not a number": 1}), summary
