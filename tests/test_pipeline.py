"`prodkit pipeline`: steps in order through the runner, stop at the first failure, resume at the failed step; the drill end to end."
import json, subprocess, sys
from pathlib import Path
import nbformat
import pytest
from conftest import ROOT
from prodkit.jobs.pipeline import list_pipelines

PRODKIT = Path(sys.executable).parent/"prodkit"
pytestmark = pytest.mark.slow

def pipeline(*args, cwd=None):
    return subprocess.run([PRODKIT, "pipeline", *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd)

def fail_unless_notebook(path: Path) -> Path:
    "A job that fails until the file named by job.params.marker exists"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("cfg = {}", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("from pathlib import Path\nmarker = Path(cfg['job']['params']['marker'])\n"
                                          "if not marker.exists(): raise FileNotFoundError(f'{marker} is not there yet')")]
    nb.metadata["kernelspec"] = {"name": "prodkit", "display_name": "Python (prodkit)", "language": "python"}
    nbformat.write(nb, path)
    return path

def test_a_pipeline_that_fails_at_step_2_resumes_at_step_2(tmp_path):
    runs, marker = tmp_path/"runs", tmp_path/"ready"
    nb = fail_unless_notebook(tmp_path/"check.ipynb")
    (tmp_path/"p.yaml").write_text(f"""steps:
  - {{name: first, job: hello, overrides: [job.params.n=4]}}
  - {{name: check, job: {nb}, overrides: ["+job.params.marker={marker}", "+job.params.after=${{steps.first.run_id}}"]}}
  - {{name: last, job: hello, overrides: ["job.params.greeting=after-${{steps.check.run_id}}"]}}
""")
    res = pipeline(tmp_path/"p.yaml", f"paths.runs_dir={runs}")
    assert res.returncode == 1, res.stdout + res.stderr                                  # the step's exit code: a cell raised
    assert "failed at step 'check'" in res.stderr and "is not there yet" in res.stderr
    [rec] = list_pipelines(runs, "p")
    assert rec.status == "failed" and rec.failed_step == "check" and [s["status"] for s in rec.steps] == ["succeeded", "failed"]
    first_run = rec.steps[0]["run_id"]
    assert (Path(rec.steps[0]["run_dir"])/"run.json").is_file()                            # the earlier step's run stays
    assert json.loads((Path(rec.steps[1]["run_dir"])/"run.json").read_text())["status"] == "failed"
    assert not (runs/"hello").exists() or len(list((runs/"hello").iterdir())) == 1         # step 3 never ran

    marker.write_text("ok")                                                                # fix the cause, run again
    res = pipeline(tmp_path/"p.yaml", f"paths.runs_dir={runs}")
    assert res.returncode == 0, res.stdout + res.stderr
    again = list_pipelines(runs, "p")[-1]
    assert [s["status"] for s in again.steps] == ["succeeded"] * 3
    assert again.steps[0]["cached"] and again.steps[0]["run_id"] == first_run               # resumed: step 1 reused, not rerun
    assert not again.steps[1]["cached"] and again.steps[1]["run_id"] != rec.steps[1]["run_id"]
    assert again.steps[2]["overrides"] == [f"job.params.greeting=after-{again.steps[1]['run_id']}"]
    assert len(list((runs/"hello").iterdir())) == 2 and "reused an identical run" in res.stderr

def test_unknown_job_and_forward_references_fail_before_anything_runs(tmp_path):
    (tmp_path/"p.yaml").write_text("steps:\n  - {name: a, job: hello}\n  - {name: b, job: no_such_job}\n")
    res = pipeline(tmp_path/"p.yaml", f"paths.runs_dir={tmp_path/'runs'}")
    assert res.returncode == 2 and "no job 'no_such_job'" in res.stderr and not (tmp_path/"runs").exists()
    res = pipeline("no_such_pipeline")
    assert res.returncode == 2 and f"pipelines: {', '.join(sorted(p.stem for p in (ROOT/'conf'/'pipeline').glob('*.yaml')))}" in res.stderr

@pytest.mark.serving
def test_the_drill_trains_shifts_and_reports_drift(tmp_path):
    from prodkit.monitoring.drift_report import external_references
    runs = tmp_path/"runs"
    res = pipeline("drill", f"paths.runs_dir={runs}", f"paths.data_dir={tmp_path/'data'}", "debug=tiny")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "drift verdict: alert" in res.stderr
    rec = list_pipelines(runs, "drill")[-1]
    drift = rec.steps[-1]
    assert drift["metrics"]["drift_status"] == "alert" and drift["metrics"]["drifted_features"] >= 5
    page = Path(drift["run_dir"])/"drift.html"
    assert external_references(page.read_text()) == []
    assert json.loads((Path(drift["run_dir"])/"drift.json").read_text())["reference"]["run"] == rec.steps[0]["run_id"]
    cli = subprocess.run([PRODKIT, "drift", rec.steps[0]["run_id"], Path(rec.steps[1]["run_dir"])/"shifted.csv", "--runs-dir", runs,
                          "--out", tmp_path/"r"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2, cli.stderr

@pytest.mark.serving
def test_the_penguins_pipeline_goes_from_the_raw_csv_to_a_drift_verdict(tmp_path):
    "conf/pipeline/penguins.yaml: string labels, categorical and missing values, no code outside prodkit; its own registry"
    runs, reg = tmp_path/"runs", tmp_path/"registry"
    res = pipeline("penguins", f"paths.runs_dir={runs}", f"paths.data_dir={tmp_path/'data'}", f"registry.path={reg}", "debug=tiny",
                   "gates.only=['parity_max_abs <= 1e-4']")   # a 2-epoch model: only the export is gated here
    assert res.returncode == 0, res.stdout + res.stderr
    rec = list_pipelines(runs, "penguins")[-1]
    assert [s["status"] for s in rec.steps] == ["succeeded"] * 4
    assert (reg/"registry.db").is_file()                                                    # the override wins over the experiment's
    batch = next(s for s in rec.steps if s["name"] == "batch")
    preds = __import__("pandas").read_parquet(next(Path(batch["run_dir"]).glob("predictions.parquet")))
    assert {"proba_Adelie", "proba_Chinstrap", "proba_Gentoo"} <= set(preds.columns) and len(preds) == 344   # every raw row scored, NaN rows too
    assert rec.steps[-1]["metrics"]["drift_status"] in ("none", "warn", "alert")
