"Tracking: a complete offline wandb run per job, nothing secret in it, and no wandb process left behind."
import hashlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest
from prodkit.core.config import compose
from prodkit.research.tracking import read_offline_run, tracked_run
from conftest import tagged_processes, PY, ROOT, run

SECRET = "sk-live-" + "7" * 24


def wandb_children() -> list[str]:
    return [p.name() for p in psutil.Process().children(recursive=True) if "wandb" in p.name()]


JOB = """
import sys
from pathlib import Path
from prodkit.core.config import compose
from prodkit.research.data import load_dataset
from prodkit.research.split import reference_stats, split_dataset
from prodkit.research.evaluate import evaluate
from prodkit.research.model import build_model
from prodkit.core.atomic import write_json
from prodkit.research.tracking import run_provenance, tracked_run
from prodkit.research.train import fit

run_dir = Path(sys.argv[1])
cfg = compose(overrides=sys.argv[2:])
data = load_dataset(cfg.data)
split = split_dataset(data, cfg.data, seed=cfg.seed)
stats = write_json(run_dir/"reference_stats.json", reference_stats(split.train, cfg.data, data_version=data.version), redacted=False)
model = build_model(cfg.model, split.inputs, seed=cfg.seed)
with tracked_run(cfg, run_dir, provenance=run_provenance(cfg, data.provenance(), split.summary())) as t:
    result = fit(model, split, cfg.train, seed=cfg.seed, checkpoint_dir=run_dir/"checkpoints", on_epoch=t.log)
    metrics = evaluate(result.model, split.test, cfg.data)
    t.log_summary(dict(metrics, **result.summary()))
    t.log_model(result.best_checkpoint, name="breast-cancer-mlp")
    t.log_artifact(stats, "reference-stats")
print(t.run_id)
"""


@pytest.mark.slow
def test_offline_job_run_is_complete_secret_free_and_leaves_no_wandb_process(tmp_path):
    tag, run_dir = uuid.uuid4().hex, tmp_path/"run"
    job = tmp_path/"job.py"; job.write_text(JOB)
    res = run(PY, job, run_dir, f"paths.data_dir={tmp_path}/data", "debug=tiny", "tracking.mode=offline",
              "+service.api_key=" + SECRET, cwd=tmp_path,
              env={"PRODKIT_TEST_TAG": tag, "MY_SERVICE_TOKEN": SECRET, "WANDB_API_KEY": SECRET[:40].ljust(40, "0")})
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 5
    while tagged_processes(tag) and time.monotonic() < deadline: time.sleep(0.1)
    assert tagged_processes(tag) == [], "a wandb process outlived the job"

    info = json.loads((run_dir/"tracking.json").read_text())
    assert info["mode"] == "offline" and info["run_id"] == res.stdout.split()[-1]
    wandb_dir = Path(info["path"])
    assert wandb_dir.parent == run_dir/"wandb" and wandb_dir.name.startswith("offline-run-") and wandb_dir.name.endswith(info["run_id"])
    assert info["sync"] == f"wandb sync {wandb_dir}"
    assert (wandb_dir/f"run-{info['run_id']}.wandb").stat().st_size > 0
    assert not (tmp_path/"wandb").exists()                     # nothing in the working directory

    rec = read_offline_run(wandb_dir)
    assert rec["run_id"] == info["run_id"] and rec["exit_code"] == 0
    cfg = rec["config"]
    assert cfg["train"]["epochs"] == 3 and cfg["tracking"]["mode"] == "offline" and cfg["seed"] == 0
    assert cfg["service"]["api_key"] == "***REDACTED***"
    data_file = tmp_path/"data"/"breast_cancer.csv"
    assert cfg["provenance"]["data"]["sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert set(cfg["provenance"]["split"]["row_hashes"]) == {"train", "val", "test"}
    assert cfg["provenance"]["environment"]["packages"]["torch"].startswith("2.")
    epochs = [h for h in rec["history"] if "val_loss" in h]
    assert [h["epoch"] for h in epochs] == [1, 2, 3] and all({"train_loss", "val_accuracy"} <= set(h) for h in epochs)
    s = rec["summary"]
    assert s["accuracy"] > 0.8 and len(s["confusion"]) == 2 and "groups" in s["segments"] and s["weights_sha256"]
    assert s["inference"]["latency_ms_p50"] > 0
    assert sorted((a["type"], a["name"], a["files"][0]) for a in rec["artifacts"]) == [
        ("model", "breast-cancer-mlp", "best.pt"), ("reference-stats", "reference-stats-reference_stats", "reference_stats.json")]

    for f in run_dir.rglob("*"):
        if f.is_file(): assert SECRET.encode() not in f.read_bytes() and SECRET[:40].encode() not in f.read_bytes(), f


@pytest.mark.slow
def test_failure_inside_the_block_finishes_the_run_as_failed_and_stops_wandb(tmp_path):
    cfg = compose(overrides=["tracking.mode=offline"])
    with pytest.raises(RuntimeError, match="boom"):
        with tracked_run(cfg, tmp_path) as t:
            t.log({"epoch": 1, "val_loss": 0.5})
            raise RuntimeError("boom")
    assert read_offline_run(t.path)["exit_code"] == 1
    assert wandb_children() == []


def test_disabled_tracking_writes_nothing_and_never_imports_wandb(tmp_path):
    code = ("import sys; from prodkit.core.config import compose; from prodkit.research.tracking import tracked_run\n"
            f"with tracked_run(compose(overrides=['tracking.mode=disabled']), {str(tmp_path)!r}) as t: t.log({{'a': 1}}); t.log_summary({{'b': 2}})\n"
            "print(t.run_id, 'wandb' in sys.modules)")
    res = run(PY, "-c", code, check=True)
    assert res.stdout.split() == ["None", "False"] and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_online_without_a_login_fails_at_once_and_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path/"cfg"), NETRC=str(tmp_path/"netrc"))
    code = ("from prodkit.core.config import compose; from prodkit.research.tracking import tracked_run, TrackingError\n"
            f"try:\n  with tracked_run(compose(overrides=['tracking.mode=online']), {str(tmp_path/'run')!r}): pass\n"
            "except TrackingError as e: print(e)")
    res = subprocess.run([PY, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "wandb could not start a run in online mode" in res.stdout and "Run `wandb login`" in res.stdout, res.stdout + res.stderr
