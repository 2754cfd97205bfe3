"Batch inference with a real registry model: the CLI, chunked = one-shot, quarantine of each kind, the job and a sharded sweep"
import json
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
import sys
from pathlib import Path
from conftest import run
from serving import make_registry

from prodkit.cli.serve import infer, infer_shards

PRODKIT = Path(sys.executable).parent/"prodkit"

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    reg = make_registry(d/"registry", n_versions=2, promote=(2,))
    df = pd.DataFrame(np.random.default_rng(0).normal(size=(2000, 4)).clip(-3, 3), columns=[f"f{i}" for i in range(4)])
    df["id"] = np.arange(2000)
    df.to_csv(d/"in.csv", index=False); df.to_parquet(d/"in.parquet", row_group_size=500)
    return d, reg, df

def cli(cmd, *args):
    r = CliRunner().invoke(cmd, [str(a) for a in args])
    return r.exit_code, r.output

@pytest.mark.slow
def test_chunked_equals_one_shot(setup):
    d, reg, df = setup
    code, out = cli(infer, d/"in.csv", d/"one.parquet", "--registry", reg.path, "--chunk-size", 10**6, "-q")
    assert code == 0, out
    s = json.loads(out); assert (s["rows"], s["quarantined"], s["model_version"]) == (2000, 0, 2)
    assert cli(infer, d/"in.parquet", d/"chunked.csv", "--registry", reg.path, "--chunk-size", 7, "-q")[0] == 0
    a, b = pd.read_parquet(d/"one.parquet"), pd.read_csv(d/"chunked.csv")
    assert a.row.tolist() == b.row.tolist() == list(range(2000))
    np.testing.assert_allclose(a[["proba_0", "proba_1", "confidence"]], b[["proba_0", "proba_1", "confidence"]], atol=1e-6)
    assert (a.label == b.label.astype(str)).all() and set(b.model_version) == {2}
    assert cli(infer, d/"in.csv", d/"v1.csv", "--registry", reg.path, "--model", "v1", "-q")[0] == 0
    assert set(pd.read_csv(d/"v1.csv").model_version) == {1}

def test_drift_sees_the_rows_batch_inference_quarantined(setup):
    "Missing values that were quarantined still came in: drift counts them instead of judging only the rows that passed"
    from prodkit.monitoring.monitor import check_drift
    d, reg, df = setup
    gappy = df.head(400).copy(); gappy.loc[gappy.index[::10], "f0"] = np.nan          # 10% missing where training had none
    gappy.to_csv(d/"gappy.csv", index=False)
    code, out = cli(infer, d/"gappy.csv", d/"gappy_out.csv", "--registry", reg.path, "--max-bad-share", 0.2, "-q")
    assert code == 0 and json.loads(out)["quarantined"] == 40, out
    df.iloc[400:].to_csv(d/"reference.csv", index=False)
    result, _ = check_drift(str(d/"reference.csv"), d/"gappy_out.csv")
    f0 = next(f for f in result.features if f.name == "f0")
    assert (f0.missing_cur, f0.rows) == (pytest.approx(0.1), 360) and "missing 0.0% -> 10.0%" in f0.reasons and f0.status == "warn"
    assert result.current["quarantined"] == 40 and result.rows_current == 400
    assert next(f for f in result.features if f.name == "f1").missing_cur == 0.0

def test_quarantine_each_kind(setup):
    d, reg, df = setup
    bad = df.head(100).astype(object)
    bad.loc[3, "f0"] = None; bad.loc[5, "f1"] = "abc"; bad.loc[7, "f2"] = "inf"; bad.loc[9, "f3"] = 99.0; bad.loc[11, "f3"] = float("nan")
    bad.to_csv(d/"bad.csv", index=False)
    code, out = cli(infer, d/"bad.csv", d/"bad_out.csv", "--registry", reg.path, "--max-bad-share", 0.1, "-q")
    assert code == 0, out
    s = json.loads(out); assert (s["rows"], s["predicted"], s["quarantined"]) == (100, 95, 5)
    q = pd.read_csv(d/"bad_out.quarantine.csv")
    assert q.row.tolist() == [3, 5, 7, 9, 11]
    assert q.reason.tolist()[:3] == ["'f0' is missing or NaN", "'f1' is not a number", "'f2' is inf"]
    assert q.reason[3].startswith("'f3'=99 outside training range [-3, 3] + margin 0.5") and q.reason[4] == "'f3' is missing or NaN"
    assert sorted(pd.read_csv(d/"bad_out.csv").row) == sorted(set(range(100)) - {3, 5, 7, 9, 11})   # every row accounted for
    code, out = cli(infer, d/"bad.csv", d/"fail.csv", "--registry", reg.path, "--max-bad-share", 0.01, "-q")
    assert code == 1 and "5 of 100 rows (5.00%) are invalid, over the limit of 1.00%" in out
    assert not (d/"fail.csv").exists() and (d/"fail.quarantine.csv").exists()
    df.drop(columns="f1").head(10).to_csv(d/"nocol.csv", index=False)
    code, out = cli(infer, d/"nocol.csv", d/"nocol_out.csv", "--registry", reg.path, "-q")
    assert code == 1 and "'f1: missing column': 10" in out

@pytest.mark.slow
def test_job_and_sharded_sweep(setup, tmp_path):
    d, reg, df = setup
    common = [f"infer.registry={reg.path}", f"infer.input={d/'in.csv'}", f"paths.runs_dir={tmp_path/'runs'}", "infer.progress=false"]
    r = run(PRODKIT, "run", "batch_infer", f"infer.output={d/'job.parquet'}", *common, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rec = json.loads(next((tmp_path/"runs"/"batch_infer").glob("*/run.json")).read_text())
    assert rec["status"] == "succeeded" and rec["metrics"]["rows"] == 2000 and rec["metrics"]["quarantined"] == 0 and rec["metrics"]["model_version"] == 2
    assert rec["artifacts"][0]["path"] == str(d/"job.parquet")                          # an output elsewhere is listed by its absolute path
    r = run(PRODKIT, "run", "batch_infer", "infer.model=v1", *common, timeout=300)          # no infer.output: the run keeps its predictions
    assert r.returncode == 0, r.stdout + r.stderr
    rd = sorted((tmp_path/"runs"/"batch_infer").glob("*/run.json"))[-1].parent          # run directories sort by time
    rec = json.loads((rd/"run.json").read_text())
    assert [a["path"] for a in rec["artifacts"]] == ["predictions.parquet"] and len(pd.read_parquet(rd/"predictions.parquet")) == 2000
    assert json.loads((rd/"predictions.parquet.summary.json").read_text())["input"] == str(d/"in.csv")
    r = run(PRODKIT, "run", "-m", "batch_infer", f"infer.output={d/'sh.csv'}", "infer.shard=0,1", "infer.shards=2", *common, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    code, out = cli(infer_shards, d/"sh.csv", "--shards", 2, "--merge")
    assert code == 0, out
    assert json.loads(out)["rows"] == 2000 and sorted(pd.read_csv(d/"sh.csv").row) == list(range(2000))
    (d/"sh.shard-1-of-2.csv").unlink()
    code, out = cli(infer_shards, d/"sh.csv", "--shards", 2)
    assert code == 1 and "shard(s) [1] of 2" in out
