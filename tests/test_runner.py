"Notebooks as production jobs: real kernels, real files, through the `prodkit` console script."
import json, math, os, signal, subprocess, sys, time
from pathlib import Path
import nbformat
import pytest
from omegaconf import OmegaConf, open_dict
from prodkit.core.config import compose
from prodkit.jobs.job import job_overrides
from prodkit.jobs.runner import execute
from prodkit.jobs.runs import ExitCode, RunRecord
from conftest import ROOT, run

PRODKIT = Path(sys.executable).parent/"prodkit"
pytestmark = pytest.mark.slow

def notebook(path: Path, *cells: str, params: str = "cfg = {'job': {'params': {}}}") -> Path:
    "A job notebook: imports, a parameters cell, then `cells`"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import json, os, time\nfrom prodkit.jobs.job import record, artifact, run_dir"),
                nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
                *[nbformat.v4.new_code_cell(c) for c in cells]]
    nbformat.write(nb, path)
    return path

def prodkit(*args, env=None, timeout=300):
    return run(PRODKIT, *args, env=env, timeout=timeout)

def records(runs: Path) -> list[RunRecord]:
    return [RunRecord.load(p.parent) for p in sorted(runs.glob("*/*/run.json"))]

@pytest.fixture
def runs(tmp_path): return tmp_path/"runs"

def test_success_writes_a_complete_record(tmp_path, runs):
    nb = notebook(tmp_path/"ok.ipynb", "record(accuracy=0.5, name='x')\n(run_dir()/'out.txt').write_text('hi')\nartifact('out.txt')")
    res = prodkit("run", "-q", nb, f"paths.runs_dir={runs}", "seed=3")
    assert res.returncode == 0, res.stderr
    [rec] = records(runs)
    assert (rec.job, rec.status, rec.exit_code, rec.seed, rec.metrics) == ("ok", "succeeded", 0, 3, {"accuracy": 0.5, "name": "x"})
    assert rec.artifacts[0]["path"] == "out.txt" and len(rec.artifacts[0]["sha256"]) == 64
    assert rec.overrides == [f"paths.runs_dir={runs}", "seed=3"]
    assert rec.git and len(rec.git["commit"]) == 40 and isinstance(rec.git["dirty"], bool)
    assert len(rec.notebook_sha256) == 64 and len(rec.source_sha256) == 64 and len(rec.config_hash) == 64
    assert "torch" in rec.environment["packages"] and rec.environment["python"].startswith("3.")
    assert str(rec.run_dir) in res.stdout and rec.duration_s > 0
    assert OmegaConf.load(Path(rec.run_dir)/"config.yaml").seed == 3
    out = nbformat.read(Path(rec.run_dir)/"output.ipynb", as_version=4)
    assert "injected-parameters" in out.cells[2].metadata.tags and out.metadata.papermill.parameters == {}

def test_hostile_values_round_trip_exactly_and_never_execute(tmp_path, runs):
    hostile = {"quotes": "it's \"q\" '''", "backslashes": "C:\\new\\x\\", "newlines": "a\nb\r\nc\n", "unicode": "héllo ✓ 日本 🚀",
               "code": "'); import os; os.system('touch PWNED'); ('", "json": '{"a": [1, "}"]}', "nan": math.nan,
               "inf": math.inf, "ninf": -math.inf, "big": 2**62, "tiny": 5e-324, "empty": "", "none": None}
    nb = notebook(tmp_path/"echo.ipynb", "(run_dir()/'cfg.json').write_text(json.dumps(cfg['job']['params']))")
    cfg = compose(overrides=job_overrides(str(nb), [f"paths.runs_dir={runs}"]))
    with open_dict(cfg): cfg.job.params = hostile
    rec = execute(cfg, progress=False)
    assert rec.status == "succeeded", rec.exit_reason
    got = json.loads((Path(rec.run_dir)/"cfg.json").read_text())
    assert math.isnan(got.pop("nan")) and {k: v for k, v in hostile.items() if k != "nan"} == got
    assert not list(tmp_path.rglob("PWNED"))

def test_unknown_override_fails_before_any_kernel(tmp_path, runs):
    nb = notebook(tmp_path/"ok.ipynb", "record(x=1)")
    res = prodkit("run", nb, f"paths.runs_dir={runs}", "train.epoch=3")
    assert res.returncode == ExitCode.CONFIG_ERROR and "train.epoch" in res.stderr
    assert not runs.exists()

@pytest.mark.parametrize("tags, args, message", [([], ["job.params.n=1"], "no cell tagged `parameters`, so it has no place for parameters (n)"),
                                                  (["parameters", "parameters"], [], "2 cells tagged")])
def test_missing_or_duplicate_parameters_cell_is_refused(tmp_path, runs, tags, args, message):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("cfg = {}", metadata={"tags": [t]} if t else {}) for t in (tags or [""])]
    nbformat.write(nb, tmp_path/"bad.ipynb")
    res = prodkit("run", tmp_path/"bad.ipynb", f"paths.runs_dir={runs}", *args)
    assert res.returncode == ExitCode.CONFIG_ERROR and message in res.stderr
    assert not runs.exists()

def test_failing_cell(tmp_path, runs):
    nb = notebook(tmp_path/"fail.ipynb", "record(before=1)", "raise ValueError('bad input row 7')", "record(after=1)")
    res = prodkit("run", "-q", nb, f"paths.runs_dir={runs}")
    assert res.returncode == ExitCode.CELL_FAILED
    [rec] = records(runs)
    assert rec.status == "failed" and "ValueError: bad input row 7" in rec.exit_reason and rec.metrics == {"before": 1}
    out = nbformat.read(Path(rec.run_dir)/"output.ipynb", as_version=4)
    assert "prodkit-error" in out.cells[0].metadata.tags and "failed" in out.cells[0].source
    failing = [c for c in out.cells if c.get("metadata", {}).get("papermill", {}).get("status") == "failed"]
    assert len(failing) == 1 and "bad input row 7" in failing[0].source
    assert "prodkit-error" in out.cells[out.cells.index(failing[0]) - 1].metadata.tags   # the anchor before it

def test_cell_past_the_timeout_is_stopped(tmp_path, runs):
    nb = notebook(tmp_path/"slow.ipynb", "time.sleep(60)")
    t0 = time.monotonic()
    res = prodkit("run", "-q", nb, f"paths.runs_dir={runs}", "job.cell_timeout=2")
    assert res.returncode == ExitCode.TIMEOUT and time.monotonic() - t0 < 40
    [rec] = records(runs)
    assert rec.status == "failed" and "timed out" in rec.exit_reason

def test_kill_9_of_the_kernel(tmp_path, runs):
    nb = notebook(tmp_path/"victim.ipynb", "record(started=1)\n(run_dir()/'pid.tmp').write_text(str(os.getpid()))\n(run_dir()/'pid.tmp').rename(run_dir()/'pid')", "time.sleep(120)")
    proc = subprocess.Popen([PRODKIT, "run", "-q", nb, f"paths.runs_dir={runs}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(runs.glob("*/*/pid")) and time.monotonic() < deadline: time.sleep(0.1)
    os.kill(int(next(runs.glob("*/*/pid")).read_text()), signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.KERNEL_DIED
    [rec] = records(runs)
    assert rec.status == "killed" and "kernel died" in rec.exit_reason and rec.metrics == {"started": 1}
    out = json.loads((Path(rec.run_dir)/"output.ipynb").read_text())   # valid JSON
    assert "killed" in "".join(out["cells"][0]["source"])

def test_secrets_reach_no_file(tmp_path, runs):
    env_secret, cfg_secret = "tok-ENV-5f3a9c1e77", "pw-CFG-0b8d2e4a11"
    nb = notebook(tmp_path/"leaky.ipynb",
                  "print('env', os.environ['MY_SERVICE_TOKEN'])\nprint('cfg', cfg['job']['params'])",
                  "record(token_len=len(os.environ['MY_SERVICE_TOKEN']), note=os.environ['MY_SERVICE_TOKEN'])")
    res = prodkit("run", "-q", nb, f"paths.runs_dir={runs}", f"+job.params.db_password={cfg_secret}",
                  env={"MY_SERVICE_TOKEN": env_secret})
    assert res.returncode == 0, res.stderr
    [rec] = records(runs)
    assert rec.metrics["token_len"] == len(env_secret)      # the job could read it from the environment
    files = [p for p in Path(rec.run_dir).rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"output.ipynb", "config.yaml", "run.json"}
    for p in files:
        text = p.read_text(errors="replace")
        assert env_secret not in text and cfg_secret not in text, p
    assert "***REDACTED***" in (Path(rec.run_dir)/"output.ipynb").read_text()
    assert env_secret not in res.stdout + res.stderr and cfg_secret not in res.stdout + res.stderr

def test_cache_hit_and_force(tmp_path, runs):
    nb = notebook(tmp_path/"c.ipynb", "record(x=1)")
    first = prodkit("run", "-q", nb, f"paths.runs_dir={runs}")
    second = prodkit("run", "-q", nb, f"paths.runs_dir={runs}")
    assert first.returncode == second.returncode == 0 and "skipped" in second.stdout
    assert len(records(runs)) == 1
    assert prodkit("run", "-q", "--force", nb, f"paths.runs_dir={runs}").returncode == 0
    assert len(records(runs)) == 2
    prodkit("run", "-q", nb, f"paths.runs_dir={runs}", "seed=1")        # another config: runs
    assert len(records(runs)) == 3

def test_failed_run_is_never_reused(tmp_path, runs):
    flag = tmp_path/"fail-once"
    flag.write_text("")
    nb = notebook(tmp_path/"flaky.ipynb", f"import pathlib\np = pathlib.Path({str(flag)!r})\nif p.exists(): p.unlink(); raise RuntimeError('first time')\nrecord(x=1)")
    assert prodkit("run", "-q", nb, f"paths.runs_dir={runs}").returncode == ExitCode.CELL_FAILED
    assert prodkit("run", "-q", nb, f"paths.runs_dir={runs}").returncode == 0
    assert [r.status for r in records(runs)] == ["failed", "succeeded"]

def test_reproduce(tmp_path, runs):
    nb = notebook(tmp_path/"det.ipynb", "import random\nrandom.seed(cfg['seed'])\nrecord(draw=random.random())")
    assert prodkit("run", "-q", nb, f"paths.runs_dir={runs}", "seed=5").returncode == 0
    [rec] = records(runs)
    res = prodkit("reproduce", "-q", rec.id[:6], "--runs-dir", runs)
    assert res.returncode == 0 and "metrics match" in res.stdout, res.stderr
    new = [r for r in records(runs) if r.reproduces == rec.id]
    assert len(new) == 1 and new[0].metrics == rec.metrics
    listing = prodkit("runs", "--runs-dir", runs, "--job", "det")
    assert rec.id in listing.stdout and new[0].id in listing.stdout
    shown = prodkit("show", rec.id, "--runs-dir", runs)
    assert json.loads(shown.stdout)["id"] == rec.id

def test_reproduce_detects_changed_metrics(tmp_path, runs):
    nb = notebook(tmp_path/"nondet.ipynb", "record(t=time.time_ns())")
    assert prodkit("run", "-q", nb, f"paths.runs_dir={runs}").returncode == 0
    [rec] = records(runs)
    res = prodkit("reproduce", "-q", rec.id, "--runs-dir", runs)
    assert res.returncode == 1 and "differs: t:" in res.stderr

def test_kernel_start_failures_are_retried(tmp_path, runs):
    kdir = tmp_path/"jupyter"/"kernels"/"broken"
    kdir.mkdir(parents=True)
    count = tmp_path/"starts"
    (kdir/"kernel.json").write_text(json.dumps({"argv": [sys.executable, "-c", f"open({str(count)!r}, 'a').write('x')"],
                                                "display_name": "broken", "language": "python"}))
    nb = notebook(tmp_path/"k.ipynb", "record(x=1)")
    res = prodkit("run", "-q", "--kernel", "broken", nb, f"paths.runs_dir={runs}", "job.start_retries=2",
                  env={"JUPYTER_PATH": str(tmp_path/"jupyter")}, timeout=400)
    assert res.returncode == ExitCode.KERNEL_START
    assert count.read_text() == "xxx"          # first attempt + 2 retries
    [rec] = records(runs)
    assert rec.status == "failed"

@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_sweep_with_one_failing_job(tmp_path, runs, launcher):
    nb = notebook(tmp_path/"sw.ipynb", "n = cfg['job']['params']['n']\nassert n != 3, 'n=3 is broken'\nrecord(sq=n * n)")
    res = prodkit("run", "-m", nb, f"paths.runs_dir={runs}", "+job.params.n=1,2,3,4", f"hydra/launcher={launcher}", timeout=600)
    assert res.returncode == 1, res.stderr
    recs = records(runs)
    assert sorted((r.metrics.get("sq", -1), r.status) for r in recs) == [(-1, "failed"), (1, "succeeded"), (4, "succeeded"), (16, "succeeded")]
    assert "failed: job 2 (+job.params.n=3" in res.stderr and "3 of 4 jobs succeeded" in res.stdout

def gone(pid: int, within: float) -> bool:
    "Has process `pid` ended within `within` seconds? A zombie has: an orphan waits for a PID 1 that may never reap it"
    stat, deadline = Path(f"/proc/{pid}/stat"), time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z": return True
        except (FileNotFoundError, ProcessLookupError): return True
        time.sleep(0.1)
    return False

def test_sigterm_of_the_runner_marks_the_run_killed(tmp_path, runs):
    nb = notebook(tmp_path/"long.ipynb", "(run_dir()/'started.tmp').write_text(str(os.getpid()))\n(run_dir()/'started.tmp').rename(run_dir()/'started')", "time.sleep(120)")
    proc = subprocess.Popen([PRODKIT, "run", "-q", nb, f"paths.runs_dir={runs}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(runs.glob("*/*/started")) and time.monotonic() < deadline: time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED
    [rec] = records(runs)
    assert rec.status == "killed" and rec.exit_reason == "interrupted by SIGTERM"
    json.loads((Path(rec.run_dir)/"output.ipynb").read_text())
    kernel_pid = int(next(runs.glob("*/*/started")).read_text())
    assert gone(kernel_pid, within=10)                   # the kernel went with the runner

def test_slurm_launcher_config_composes():
    from hydra import compose as hydra_compose, initialize_config_dir
    from prodkit.core.config import conf_dir
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose("config", overrides=["job=hello", "hydra/launcher=slurm", "hydra.launcher.partition=cpu"],
                            return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.cpus_per_task) == ("cpu", 2)

def test_secrets_in_a_sweep_reach_no_file(tmp_path, runs):
    env_secret, cfg_secrets = "tok-ENV-sweep-77aa99", ["CFGSECRET_AAA111", "CFGSECRET_BBB222"]
    nb = notebook(tmp_path/"s.ipynb", "print(os.environ['MY_API_TOKEN'], cfg['job']['params'])\nrecord(x=1)")
    res = prodkit("run", "-m", nb, f"paths.runs_dir={runs}", "+job.params.api_key=" + ",".join(cfg_secrets),
                  "hydra/launcher=basic", env={"MY_API_TOKEN": env_secret})
    assert res.returncode == 0, res.stderr
    assert len(records(runs)) == 2              # redacted alike, the two points still run separately
    files = [p for p in runs.rglob("*") if p.is_file()]
    assert any(p.name == "multirun.yaml" for p in files) and any(p.name == "sweep.json" for p in files)
    for p in files:
        text = p.read_text(errors="replace")
        for s in (env_secret, *cfg_secrets): assert s not in text, p

def test_cache_does_not_depend_on_the_working_directory(tmp_path, runs):
    first = run(PRODKIT, "run", "-q", "hello", f"paths.runs_dir={runs}", cwd=ROOT)
    second = run(PRODKIT, "run", "-q", "hello", f"paths.runs_dir={runs}", cwd=tmp_path)
    assert first.returncode == second.returncode == 0 and "skipped" in second.stdout

def test_a_notebook_path_runs_as_its_configured_job(tmp_path, runs):
    res = run(PRODKIT, "run", "-q", ROOT/"nbs"/"jobs"/"hello.ipynb", f"paths.runs_dir={runs}", "job.params.n=4", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    [rec] = records(runs)
    assert rec.job == "hello" and rec.metrics == {"n": 4, "total": 14}

def test_ml_settings_that_contain_secret_words_reach_the_job_unchanged(tmp_path, runs):
    nb = notebook(tmp_path/"p.ipynb", "(run_dir()/'p.json').write_text(json.dumps(cfg['job']['params']))")
    params = ["+job.params.key_metric=val_accuracy", "+job.params.token_budget=2000", "+job.params.pad_token_id=50256",
              "+job.params.eos_token='</s>'", "+job.params.use_auth_token=true", "+job.params.tokenizer=gpt2-large"]
    res = prodkit("run", "-q", nb, f"paths.runs_dir={runs}", *params)
    assert res.returncode == 0, res.stderr
    [rec] = records(runs)
    assert json.loads((Path(rec.run_dir)/"p.json").read_text()) == {
        "key_metric": "val_accuracy", "token_budget": 2000, "pad_token_id": 50256, "eos_token": "</s>",
        "use_auth_token": True, "tokenizer": "gpt2-large"}
    again = prodkit("run", "-q", nb, f"paths.runs_dir={runs}", *params[:1], "+job.params.token_budget=3000", *params[2:])
    assert again.returncode == 0 and "skipped" not in again.stdout         # another value: another run

def test_nested_and_concatenated_secrets_reach_no_file(tmp_path, runs):
    env = {"PGPASSWORD": "pgpass_secret_value", "DB_SECRETKEY": "concatsecretkey999"}
    nb = notebook(tmp_path/"n.ipynb", "print(os.environ['PGPASSWORD'], os.environ['DB_SECRETKEY'], cfg['db'])")
    res = prodkit("run", "-q", nb, f"paths.runs_dir={runs}", "+db.credentials={user: bob, pass: hunter2hunter2}",
                  "+db.secret=[abcdefgh123]", env=env)
    assert res.returncode == 0, res.stderr
    [rec] = records(runs)
    for p in Path(rec.run_dir).rglob("*"):
        if p.is_file():
            text = p.read_text(errors="replace")
            for s in (*env.values(), "hunter2hunter2", "abcdefgh123"): assert s not in text, (p, s)

def test_a_forbidden_target_fails_every_point_of_a_sweep(tmp_path, runs):
    nb = notebook(tmp_path/"t.ipynb", "record(x=1)")
    res = prodkit("run", "-m", nb, f"paths.runs_dir={runs}", "+job.params.n=1,2", "+job.params.x={_target_: os.system}")
    assert res.returncode == 1 and res.stderr.count("not allowed") == 2
    assert records(runs) == []                                   # no kernel ran

def test_options_may_follow_the_job(tmp_path, runs):
    nb = notebook(tmp_path/"o.ipynb", "record(x=1)")
    assert prodkit("run", nb, "-q", f"paths.runs_dir={runs}").returncode == 0
    res = prodkit("run", nb, f"paths.runs_dir={runs}", "--force", "-q")
    assert res.returncode == 0 and "skipped" not in res.stdout and len(records(runs)) == 2

def test_a_sweep_with_a_wrong_key_fails_before_any_kernel(tmp_path, runs):
    res = prodkit("run", "-m", "hello", f"paths.runs_dir={runs}", "job.parms.n=1,2")
    assert res.returncode == ExitCode.CONFIG_ERROR and "Key 'parms' not in 'JobConfig'" in res.stderr
    assert not runs.exists() or records(runs) == []

def test_a_bad_value_at_any_point_fails_the_sweep_before_any_kernel(tmp_path, runs):
    res = prodkit("run", "-m", "hello", f"paths.runs_dir={runs}", "seed=1,abc")
    assert res.returncode == ExitCode.CONFIG_ERROR and "seed=abc" in res.stderr
    assert not runs.exists() or records(runs) == []
