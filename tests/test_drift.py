"Drift: the acceptance checks on real data, the report's self-containment, and `prodkit drift`'s exit codes."
import json, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from prodkit.research.data import synthetic_frame
from prodkit.monitoring.drift import compare, reference_from_frame
from prodkit.monitoring.drift_report import external_references, render_html
from conftest import ROOT

PRODKIT = Path(sys.executable).parent/"prodkit"

@pytest.fixture(scope="module")
def reference():
    return reference_from_frame(synthetic_frame(50_000, 12, seed=11), "target")

def test_a_shifted_copy_drifts_and_a_fresh_sample_does_not(reference):
    fresh = synthetic_frame(50_000, 12, seed=12)
    assert compare(reference, fresh).status == "none"
    shifted = fresh.copy(); shifted[["x0", "x1", "x2", "x3"]] += 0.3            # 0.3 sigma on a third of the features
    res = compare(reference, shifted)
    assert sorted(f.name for f in res.drifted) == ["x0", "x1", "x2", "x3"] and res.dataset_drift and res.exit_code == 2

def test_a_tiny_shift_on_many_rows_is_significant_but_not_drift(reference):
    fresh = synthetic_frame(50_000, 12, seed=13); fresh["x0"] += 0.03            # KS p-value tiny, effect negligible
    f = next(f for f in compare(reference, fresh).features if f.name == "x0")
    assert f.p_value < 0.05 and f.status == "none" and f.psi < 0.01 and f.distance < 0.05

def test_categorical_drift(reference):
    cur = synthetic_frame(20_000, 12, seed=14)
    cur["segment"] = np.where(cur["segment"] == "b", "c", cur["segment"])       # b's share moves to c
    res = compare(reference, cur)
    assert [f.name for f in res.drifted] == ["segment"] and res.drifted[0].test == "chi2" and res.drifted[0].p_value < 1e-10
    cur.loc[cur.index[:3000], "segment"] = "zz"                                 # a category never seen in training
    seg = next(f for f in compare(reference, cur).features if f.name == "segment")
    assert "new categories: zz" in seg.reasons and seg.plot["labels"][-1] == "zz"

def test_missing_values_are_their_own_signal_and_never_reach_the_tests(reference):
    cur = synthetic_frame(20_000, 12, seed=15)
    cur.loc[cur.sample(frac=0.25, random_state=0).index, "x7"] = np.nan
    f = next(f for f in compare(reference, cur).features if f.name == "x7")
    assert f.status == "alert" and f.missing_cur == pytest.approx(0.25) and f.reasons == ["missing 0.0% -> 25.0%"]
    assert np.isfinite([f.psi, f.distance, f.statistic, f.p_value]).all() and f.rows == 15_000

def test_values_beyond_the_training_range_are_counted_not_dropped(reference):
    cur = synthetic_frame(5_000, 12, seed=16); cur["x4"] = 50.0
    f = next(f for f in compare(reference, cur).features if f.name == "x4")
    assert f.plot["current"][-1] == 1.0 and f.status == "alert"

def test_the_html_report_has_no_external_reference(reference):
    cur = synthetic_frame(5_000, 12, seed=17); cur["x0"] += 1; cur["prediction"] = 1; cur["confidence"] = 0.9
    page = render_html(compare(reference, cur))
    assert external_references(page) == [] and "data:image/png;base64," in page
    assert external_references(page.replace("</body>", '<img src="http://example.com/x.png"></body>'))

@pytest.mark.slow
def test_prodkit_drift_exit_codes(tmp_path):
    synthetic_frame(5_000, 6, seed=1).to_csv(tmp_path/"ref.csv", index=False)
    synthetic_frame(3_000, 6, seed=2).to_parquet(tmp_path/"none.parquet")
    warn = synthetic_frame(3_000, 6, seed=3); warn.loc[warn.index[:300], "x2"] = np.nan; warn.to_csv(tmp_path/"warn.csv", index=False)
    alert = synthetic_frame(3_000, 6, seed=4); alert[["x0", "x1", "x2"]] += 1; alert.to_csv(tmp_path/"alert.csv", index=False)
    def drift(*args): return subprocess.run([PRODKIT, "drift", *map(str, args)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    for name, code in (("none.parquet", 0), ("warn.csv", 1), ("alert.csv", 2)):
        res = drift(tmp_path/"ref.csv", tmp_path/name, "--out", tmp_path/name.split(".")[0])
        assert res.returncode == code, (name, res.stdout, res.stderr)
        d = json.loads((tmp_path/name.split(".")[0]/"drift.json").read_text())
        assert d["exit_code"] == code and d["status"] == ("none", "warn", "alert")[code]
    assert drift(tmp_path/"ref.csv", tmp_path/"missing.csv").returncode == 3          # cannot check: never 0, 1 or 2
    assert drift(tmp_path/"ref.csv").returncode == 3                                  # a usage error is not an alert
    assert drift(tmp_path/"ref.csv", tmp_path/"none.parquet", "--set", "psi_warn=abc").returncode == 3
    res = drift(tmp_path/"ref.csv", tmp_path/"alert.csv", "--set", "psi_alert=100", "--set", "dataset_share=1", "--json", "--out", tmp_path/"j")
    assert res.returncode == 1 and json.loads(res.stdout)["thresholds"]["psi_alert"] == 100

@pytest.mark.slow
def test_a_batch_output_is_checked_on_the_rows_it_scored(tmp_path):
    "`prodkit drift REF preds.parquet` as the README writes it: the batch summary names the scored file; predictions alone are refused"
    from prodkit.serving.batch import batch_infer
    from prodkit.serving.infer import OnnxModel
    from serving import FEATURES, tiny_onnx
    frame = lambda seed: synthetic_frame(2_000, 4, seed=seed).rename(columns=lambda c: c.replace("x", "f"))[FEATURES].clip(-3, 3)
    frame(1).to_csv(tmp_path/"ref.csv", index=False); frame(2).to_csv(tmp_path/"new.csv", index=False)
    batch_infer(OnnxModel(tiny_onnx()), tmp_path/"new.csv", tmp_path/"preds.parquet", progress=False)
    def drift(*args): return subprocess.run([PRODKIT, "drift", *map(str, args)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    res = drift(tmp_path/"ref.csv", tmp_path/"preds.parquet", "--json")
    assert res.returncode == 0, res.stdout + res.stderr                               # a fresh sample: no drift, every feature checked
    assert json.loads(res.stdout)["current"]["inputs"] == str(tmp_path/"new.csv")
    (tmp_path/"preds.parquet.summary.json").unlink()                                  # predictions alone: not "every feature missing"
    res = drift(tmp_path/"ref.csv", tmp_path/"preds.parquet")
    assert res.returncode == 3 and "none of the reference's features" in res.stderr and "--inputs" in res.stderr, res.stdout + res.stderr
    assert drift(tmp_path/"ref.csv", tmp_path/"preds.parquet", "--inputs", tmp_path/"new.csv").returncode == 0

def test_bench_and_screenshot_scripts_are_runnable_modules():
    for p in ("bench/drift.py", "bench/report_screenshot.py"):
        assert subprocess.run([sys.executable, "-m", "py_compile", str(ROOT/p)]).returncode == 0
