"Closing the loop: logged requests + late labels -> a feedback dataset -> a retrain that records both data versions."
import hashlib, json, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
from prodkit.core.config import compose
from prodkit.research.data import load_dataset
from prodkit.monitoring.feedback import join_feedback, write_feedback
from prodkit.monitoring.prediction_log import PredictionLog, read_log
from prodkit.jobs.runs import RunRecord

PRODKIT = Path(sys.executable).parent/"prodkit"

@pytest.mark.slow
def test_feedback_joins_by_id_and_a_retrain_records_both_data_versions(tmp_path):
    cfg = compose(overrides=[f"paths.data_dir={tmp_path/'data'}"])
    data = load_dataset(cfg.data)
    rows = data.frame.sample(120, random_state=0)
    with PredictionLog(tmp_path/"log", batch_size=32, format="parquet") as plog:
        for i, r in enumerate(rows.drop(columns="target").to_dict("records")):
            plog.log(r, {"prediction": 1, "confidence": 0.8}, "v1", f"req-{i:04d}")
    labels = pd.DataFrame({"request_id": [f"req-{i:04d}" for i in range(0, 120, 2)], "target": rows["target"].iloc[::2].tolist()})
    labels = labels.sample(frac=1, random_state=1)                              # labels arrive in any order
    fb, report = join_feedback(read_log(tmp_path/"log"), labels, cfg.data)
    assert (report.joined, report.unlabeled, report.unmatched_labels) == (60, 60, 0)
    expect = rows.iloc[::2].reset_index(drop=True)
    pd.testing.assert_frame_equal(fb, expect[fb.columns], check_dtype=False)   # each label on its own row's features
    sha = write_feedback(fb, tmp_path/"feedback.csv")

    runs = tmp_path/"runs"
    res = subprocess.run([PRODKIT, "run", "-q", "train", "debug=tiny", f"paths.runs_dir={runs}", f"paths.data_dir={tmp_path/'data'}",
                          f"data.feedback={tmp_path/'feedback.csv'}"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = RunRecord.load(next(runs.glob("train/*/run.json")).parent)
    assert rec.data == {str(data.path): hashlib.sha256(data.path.read_bytes()).hexdigest(), str(tmp_path/"feedback.csv"): sha}
    assert rec.metrics["feedback_sha256"] == sha and rec.metrics["data_sha256"] == rec.data[str(data.path)]
    assert rec.metrics["rows_with_feedback"] == 569 + 60
    split = json.loads((Path(rec.run_dir)/"split.json").read_text())
    assert sum(split["rows"].values()) == 629 and split["data_version"] not in (sha, rec.data[str(data.path)])

def test_a_missing_feedback_file_is_a_config_error(tmp_path):
    from prodkit.core.config import ConfigError
    with pytest.raises(ConfigError, match="data.feedback"): compose(overrides=[f"data.feedback={tmp_path/'nope.csv'}"])
