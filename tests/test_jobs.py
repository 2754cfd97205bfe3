"The train job end to end through `prodkit run`: real kernels, real training, real wandb offline runs."
import json, subprocess, sys, time, uuid
from pathlib import Path
import nbformat
import pytest
from prodkit.jobs.runs import RunRecord
from conftest import run, tagged_processes

PRODKIT = Path(sys.executable).parent/"prodkit"
pytestmark = pytest.mark.slow
TINY = ["debug=tiny", "train.epochs=4"]

def train(runs: Path, *overrides, env=None) -> RunRecord:
    res = run(PRODKIT, "run", "-q", "--force", "train", f"paths.runs_dir={runs}", f"paths.data_dir={runs.parent/'data'}",
              *TINY, *overrides, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return RunRecord.load(sorted(runs.glob("train/*/run.json"))[-1].parent)

def test_train_job_records_metrics_artifacts_plots_and_a_complete_wandb_run(tmp_path):
    tag = uuid.uuid4().hex
    rec = train(tmp_path/"runs", "tracking.mode=offline", env={"WANDB_API_KEY": "wk-0123456789abcdef0123", "PRODKIT_TEST_TAG": tag})
    d = Path(rec.run_dir)
    assert {"accuracy", "f1", "roc_auc", "ece", "weights_sha256"} <= set(rec.metrics)
    assert 0.5 < rec.metrics["accuracy"] <= 1 and 0 <= rec.metrics["ece"] <= 1 and len(rec.metrics["weights_sha256"]) == 64
    assert {a["path"] for a in rec.artifacts} == {"model.pt", "reference_stats.json", "split.json", "importance.json", "importance.png"}
    imp = json.loads((d/"importance.json").read_text())
    assert imp["metric"] == "accuracy" and len(imp["features"]) == 30 and {"mean", "std", "feature"} == set(imp["features"][0])
    stats = json.loads((d/"reference_stats.json").read_text())
    assert stats and "mean radius" in json.dumps(stats)
    assert list(rec.data.values())[0] is not None           # the data file's sha256, materialized by the job
    cached = run(PRODKIT, "run", "-q", "train", f"paths.runs_dir={d.parents[1]}", f"paths.data_dir={d.parents[2]/'data'}", *TINY, "tracking.mode=offline")
    assert "skipped" in cached.stdout and rec.id in cached.stdout  # keyed on the data the run read
    out = nbformat.read(d/"output.ipynb", as_version=4)
    pngs = [o for c in out.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 3                                    # loss curves, the confusion matrix, permutation importance
    assert "Failed to detect the name of this notebook" not in (d/"output.ipynb").read_text()   # wandb knows the job's notebook
    wdir = Path(rec.links["wandb_dir"])
    assert rec.links["wandb_run_id"] in wdir.name and wdir.is_relative_to(d)
    assert list(wdir.glob("run-*.wandb")) and (wdir/"files").is_dir()
    from prodkit.research.tracking import read_offline_run
    prov = read_offline_run(wdir)["config"]["provenance"]      # collected once, by the runner: wandb logs what run.json holds
    assert prov["git"] == rec.git and prov["environment"] == json.loads(json.dumps(rec.environment))
    assert tagged_processes(tag) == []                      # no kernel, no wandb service outlives the job
    for p in d.rglob("*"):
        if p.is_file(): assert b"wk-0123456789abcdef0123" not in p.read_bytes(), p

def test_train_job_is_deterministic(tmp_path):
    a = train(tmp_path/"runs")
    b = train(tmp_path/"runs")
    assert a.id != b.id and a.metrics == b.metrics      # weights_sha256 included: bit-identical weights
    assert {"latency_ms_p50", "peak_rss_mb", "train_seconds"} <= set(a.measurements)
    res = run(PRODKIT, "reproduce", "-q", a.id, "--runs-dir", tmp_path/"runs")
    assert res.returncode == 0 and "metrics match" in res.stdout, res.stderr

def test_digits_with_a_cnn_through_the_same_job(tmp_path):
    rec = train(tmp_path/"runs", "data=digits", "model=cnn")
    assert rec.metrics["accuracy"] > 0.5 and 0.5 < rec.metrics["roc_auc"] <= 1   # 10 classes: one-vs-rest AUC
    assert "digits" in (Path(rec.run_dir)/"config.yaml").read_text()

def test_a_killed_train_job_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    runs, data = tmp_path/"runs", tmp_path/"data"
    args = ["train", f"paths.runs_dir={runs}", f"paths.data_dir={data}", "data=synthetic", "data.n_rows=20000",
            "train.epochs=20", "train.patience=0", "tracking.mode=disabled"]
    proc = subprocess.Popen([PRODKIT, "run", "-q", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(runs.glob("train/*/checkpoints/last.pt")) and time.monotonic() < deadline: time.sleep(0.1)
    time.sleep(1.0)                                           # a few more epochs, then a hard kill mid-training
    proc.kill(); proc.communicate(timeout=60)
    [killed] = [p.parent for p in runs.glob("train/*/run.json")]
    assert not (killed/"model.pt").exists()                   # it really stopped before the end
    resumed = run(PRODKIT, "run", "-q", *args, f"train.resume_from={killed}", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    straight = run(PRODKIT, "run", "-q", "--force", *args, timeout=600)
    assert straight.returncode == 0, straight.stderr
    recs = {r.run_dir: r for r in (RunRecord.load(p.parent) for p in runs.glob("train/*/run.json"))}
    done = [r for r in recs.values() if r.status == "succeeded"]
    assert len(done) == 2 and done[0].metrics["weights_sha256"] == done[1].metrics["weights_sha256"]
    resumed_rec = next(r for r in done if "resume_from" in " ".join(r.overrides))
    straight_rec = next(r for r in done if r is not resumed_rec)
    assert 0 < resumed_rec.metrics["resumed_from_epoch"] < 20           # it continued from the killed run's last epoch
    assert "resumed_from_epoch" not in straight_rec.metrics
