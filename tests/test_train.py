"Training: bit-identical reruns, resume after a real SIGKILL, clear failures, and digits + CNN through the same code."
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from prodkit.core.config import compose
from prodkit.research.data import load_dataset
from prodkit.research.split import split_dataset
from prodkit.research.evaluate import evaluate, plot_confusion, plot_history
from prodkit.research.model import build_model, load_model, weights_sha256
from prodkit.research.train import TrainingError, fit
from conftest import PY, ROOT

TINY = ["data=synthetic", "data.n_rows=600", "data.n_features=6", "model.hidden=[16]", "debug=tiny", "train.epochs=5"]


def setup(tmp_path, *overrides):
    cfg = compose(overrides=[f"paths.data_dir={tmp_path}/data", *overrides])
    return cfg, split_dataset(load_dataset(cfg.data), cfg.data, seed=cfg.seed)


def train(cfg, split, **kw):
    return fit(build_model(cfg.model, split.inputs, seed=cfg.seed), split, cfg.train, seed=cfg.seed, **kw)


@pytest.mark.slow
def test_same_config_data_and_seed_give_bit_identical_weights_and_metrics(tmp_path):
    cfg, split = setup(tmp_path, *TINY)
    a, b = train(cfg, split), train(cfg, split)
    assert a.weights_sha256 == b.weights_sha256 == weights_sha256(b.model)
    assert a.history == b.history
    assert evaluate(a.model, split.test, cfg.data, inference=False) == evaluate(b.model, split.test, cfg.data, inference=False)
    other_cfg, other_split = setup(tmp_path, *TINY, "seed=1")
    assert train(other_cfg, other_split).weights_sha256 != a.weights_sha256


@pytest.mark.slow
def test_default_breast_cancer_config_trains_well(tmp_path):
    cfg, split = setup(tmp_path, "train.progress=false")
    r = train(cfg, split)
    m = evaluate(r.model, split.test, cfg.data)
    assert m["accuracy"] > 0.93 and m["roc_auc"] > 0.97 and m["ece"] < 0.1
    assert set(m["segments"]["groups"]) == {"[0, 12)", "[12, 15)", "[15, 60)"}
    assert m["inference"]["latency_ms_p50"] > 0 and m["inference"]["peak_rss_mb"] > 0
    assert len(plot_history(r.history).axes) == 2 and len(plot_confusion(m["confusion"]).axes) == 1


KILLED_RUN = """
import sys
from prodkit.core.config import compose
from prodkit.research.data import load_dataset
from prodkit.research.split import split_dataset
from prodkit.research.model import build_model
from prodkit.research.train import fit
cfg = compose(overrides=sys.argv[2:])
split = split_dataset(load_dataset(cfg.data), cfg.data, seed=cfg.seed)
fit(build_model(cfg.model, split.inputs, seed=cfg.seed), split, cfg.train, seed=cfg.seed, checkpoint_dir=sys.argv[1])
print("finished")
"""


@pytest.mark.slow
def test_resume_after_sigkill_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    overrides = [f"paths.data_dir={tmp_path}/data", "data=synthetic", "data.n_rows=20000", "data.n_features=16",
                 "model.hidden=[64, 32]", "debug=tiny", "train.epochs=8"]
    cfg, split = setup(tmp_path, *overrides[1:])             # materializes the data before the race starts
    ck = tmp_path/"checkpoints"
    script = tmp_path/"train.py"; script.write_text(KILLED_RUN)
    proc = subprocess.Popen([PY, script, ck, *overrides], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if (ck/"last.pt").exists() and torch.load(ck/"last.pt", weights_only=True)["state"]["epoch"] >= 2: break
            time.sleep(0.02)
        assert proc.poll() is None, f"training ended before it could be killed:\n{proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode == -signal.SIGKILL and "finished" not in out
    done = torch.load(ck/"last.pt", weights_only=True)["state"]["epoch"]
    assert 2 <= done < 8, done

    resumed = train(cfg, split, checkpoint_dir=ck)
    assert not list(ck.glob(".*.tmp"))    # a write the kill interrupted is cleaned up
    uninterrupted = train(cfg, split, checkpoint_dir=tmp_path/"reference")
    assert resumed.resumed_from == done and len(resumed.history) == 8
    assert resumed.weights_sha256 == uninterrupted.weights_sha256
    assert resumed.history == uninterrupted.history
    assert weights_sha256(load_model(ck/"best.pt")) == resumed.weights_sha256


@pytest.mark.slow
def test_resuming_a_finished_run_returns_it_and_more_epochs_continue_it(tmp_path):
    cfg, split = setup(tmp_path, *TINY, "train.patience=0")
    first = train(cfg, split, checkpoint_dir=tmp_path/"ck")
    again = train(cfg, split, checkpoint_dir=tmp_path/"ck")
    assert (again.resumed_from, again.weights_sha256, len(again.history)) == (5, first.weights_sha256, 5)
    longer_cfg, _ = setup(tmp_path, *TINY, "train.patience=0", "train.epochs=7")
    longer = train(longer_cfg, split, checkpoint_dir=tmp_path/"ck")
    assert longer.resumed_from == 5 and len(longer.history) == 7
    assert longer.weights_sha256 == train(longer_cfg, split).weights_sha256


def test_checkpoint_of_another_run_is_refused(tmp_path):
    cfg, split = setup(tmp_path, *TINY)
    train(cfg, split, checkpoint_dir=tmp_path/"ck")
    other, _ = setup(tmp_path, *TINY, "train.batch_size=32")
    with pytest.raises(TrainingError, match="train.batch_size: 64 in the checkpoint, 32 now"):
        train(other, split, checkpoint_dir=tmp_path/"ck")
    assert train(other, split, checkpoint_dir=tmp_path/"ck", resume=False).resumed_from is None


def test_nan_loss_fails_clearly_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg, split = setup(tmp_path, *TINY, "train.optimizer=sgd", "train.lr=1e12", "train.divergence_factor=null")   # NaN itself, not the factor
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at epoch 1, batch \d+/\d+: training diverged. Try a lower train.lr \(now 1e\+12\)"):
        train(cfg, split)
    cfg, split = setup(tmp_path, *TINY, "train.epochs=2", "train.patience=0")
    train(cfg, split, checkpoint_dir=tmp_path/"ck")                  # two good epochs
    split.train = split.train.copy()
    split.train.iloc[5, [0, 1]] = [np.inf, -np.inf]   # values the schema would have refused: inf - inf is nan
    more, _ = setup(tmp_path, *TINY, "train.epochs=4", "train.patience=0")
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 3, batch \d+/\d+"): train(more, split, checkpoint_dir=tmp_path/"ck")
    assert torch.load(tmp_path/"ck"/"last.pt", weights_only=True)["state"]["epoch"] == 2


def test_progress_bar_shows_loss_and_metric(tmp_path, capsys):
    cfg, split = setup(tmp_path, *TINY, "train.progress=true", "train.epochs=2")
    train(cfg, split)
    err = capsys.readouterr().err
    assert "train: 100%" in err and "val_loss=" in err and "val_accuracy=" in err


def test_fit_leaves_global_torch_settings_as_they_were(tmp_path):
    cfg, split = setup(tmp_path, *TINY, "train.threads=1")
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    train(cfg, split)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, det)


@pytest.mark.slow
def test_digits_with_a_cnn_trains_through_the_same_code_path(tmp_path):
    cfg, split = setup(tmp_path, "data=digits", "model=cnn", "debug=tiny", "train.epochs=4")
    r = train(cfg, split, checkpoint_dir=tmp_path/"ck")
    assert type(r.model.net).__name__ == "CNN"
    m = evaluate(r.model, split.test, cfg.data)
    assert m["accuracy"] > 0.8 and m["roc_auc"] > 0.95 and len(m["confusion"]) == 10 and m["segments"] is None
    assert weights_sha256(load_model(r.best_checkpoint)) == r.weights_sha256
    assert train(cfg, split).weights_sha256 == r.weights_sha256
