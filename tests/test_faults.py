"Faults an operator's bad day brings: signals, damaged records, odd paths and values, secrets in errors. Real processes and files."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import nbformat
import pytest
from prodkit.jobs.runs import ExitCode, RunRecord
from conftest import ROOT, interruptible, run

PRODKIT = Path(sys.executable).parent/"prodkit"
pytestmark = pytest.mark.slow
SECRET = "tok-FAULT-5f3a9c1e77"

def notebook(path: Path, *cells: str) -> Path:
    "A job notebook: imports, a parameters cell, then `cells`"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import json, os, time\nfrom prodkit.jobs.job import record, artifact, run_dir"),
                nbformat.v4.new_code_cell("cfg = {'job': {'params': {}}}", metadata={"tags": ["parameters"]}),
                *[nbformat.v4.new_code_cell(c) for c in cells]]
    nbformat.write(nb, path)
    return path

def prodkit(*args, env=None, timeout=300, cwd=ROOT):
    return run(PRODKIT, *args, env=env, timeout=timeout, cwd=cwd)

def records(runs: Path) -> list[RunRecord]:
    return [RunRecord.load(p.parent) for p in sorted(runs.glob("*/*/run.json"))]

def wait_for(pattern: str, where: Path, n: int = 1, timeout: float = 90) -> list[Path]:
    "Wait until `n` files match `pattern` under `where`"
    deadline = time.monotonic() + timeout
    while len(found := list(where.glob(pattern))) < n and time.monotonic() < deadline: time.sleep(0.1)
    assert len(found) >= n, f"only {len(found)} of {n} {pattern} after {timeout} s"
    return found

@pytest.fixture
def runs(tmp_path): return tmp_path/"runs"

# --- values and paths that escape ---------------------------------------------------------------

@pytest.mark.parametrize("override", ["job.cell_timeout=1.5", "job.cell_timeout=0", "job.cell_timeout=-1", "job.start_retries=-5",
                                      "train.lr=nan", "train.lr=-1", "train.epochs=0", "job.name=../../x", "job.name=/tmp/x"])
def test_out_of_range_values_and_escaping_names_are_refused_at_compose_time(tmp_path, runs, override):
    res = prodkit("run", "hello", f"paths.runs_dir={runs}", override)
    assert res.returncode == ExitCode.CONFIG_ERROR, (res.returncode, res.stderr)
    assert override.split("=")[0] in res.stderr and "Traceback" not in res.stderr
    assert not runs.exists() and not (tmp_path/"x").exists()

def test_null_cell_timeout_means_no_limit(tmp_path, runs):
    nb = notebook(tmp_path/"slow.ipynb", "time.sleep(2.5)")
    limited = prodkit("run", "-q", nb, f"paths.runs_dir={runs}", "job.cell_timeout=1")
    assert limited.returncode == ExitCode.TIMEOUT, limited.stderr          # a limit holds the cell...
    unlimited = prodkit("run", "-q", nb, f"paths.runs_dir={runs}", "job.cell_timeout=null")
    assert unlimited.returncode == 0, unlimited.stderr                    # ...null lifts it

def test_a_relative_runs_dir_is_taken_from_the_project_root(tmp_path, project_copy):
    nb = notebook(tmp_path/"rel.ipynb", "record(x=1)\n(run_dir()/'a.txt').write_text('a')\nartifact('a.txt')")
    (elsewhere := tmp_path/"elsewhere").mkdir()
    res = prodkit("run", "-q", nb, "paths.runs_dir=relruns", env={"PRODKIT_ROOT": str(project_copy)}, cwd=elsewhere)
    assert res.returncode == 0, res.stderr
    [rec] = records(project_copy/"relruns")
    assert Path(rec.run_dir).is_absolute() and rec.metrics == {"x": 1} and [a["path"] for a in rec.artifacts] == ["a.txt"]
    assert not list(elsewhere.iterdir()) and not list(Path(rec.run_dir).rglob("relruns"))   # no nested copy

# --- damaged records ----------------------------------------------------------------------------

def damaged(name: str, **fields) -> bytes:
    "A run.json with a good head and `fields` as given"
    return json.dumps({"id": f"bad-{name}", "job": "d", "notebook": "", "run_dir": "x", **fields}).encode()

DAMAGED = {"bytes": b'{"id": "bad\xff\xfe", "job": "d"}', "list": b"[1, 2, 3]", "status": damaged("status", status=3),
           "metrics": damaged("metrics", metrics="x"), "links": damaged("links", links=5), "params": damaged("params", params="x"),
           # inside a field: each as the runner writes it
           "artifacts": damaged("artifacts", artifacts=[1, 2]), "artifact-keys": damaged("artifact-keys", artifacts=[{"path": "a.txt"}]),
           "metric-list": damaged("metric-list", metrics={"x": [1, 2]}), "measurement": damaged("measurement", measurements={"s": {}}),
           "link-value": damaged("link-value", links={"w": 5}), "overrides": damaged("overrides", overrides=[1]),
           "data": damaged("data", data={"a.csv": 1}), "git": damaged("git", git={"commit": 1, "dirty": False, "diff_sha256": None}),
           "environment": damaged("environment", environment={"packages": {"torch": 2}}), "pid": damaged("pid", pid=-1)}

def test_a_damaged_record_never_blocks_other_runs_listings_or_the_cache(tmp_path, runs):
    nb = notebook(tmp_path/"d.ipynb", "record(x=1)")
    first = prodkit("run", "-q", nb, f"paths.runs_dir={runs}")
    assert first.returncode == 0, first.stderr
    [good] = records(runs)
    bad = {}
    for name, content in DAMAGED.items():
        bad[name] = runs/"d"/f"20000101T000000.000000Z-{name}"
        bad[name].mkdir()
        (bad[name]/"run.json").write_bytes(content)
    listing = prodkit("runs", "--runs-dir", runs)
    assert listing.returncode == 0 and good.id in listing.stdout and "bad-" not in listing.stdout, listing.stderr
    for d in bad.values(): assert listing.stderr.count(str(d/"run.json")) == 1, listing.stderr   # one warning each
    shown = prodkit("show", good.id, "--runs-dir", runs)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == good.id, shown.stderr
    again = prodkit("run", "-q", nb, f"paths.runs_dir={runs}")
    assert again.returncode == 0 and "skipped" in again.stdout, again.stderr          # the cache still finds the good run

# --- secrets on the console ---------------------------------------------------------------------

def test_a_secret_in_a_cell_error_or_a_metric_name_is_scrubbed_everywhere(tmp_path, runs):
    nb = notebook(tmp_path/"leak.ipynb", "record(**{os.environ['MY_SERVICE_TOKEN']: 1, 'ok': 2})",
                  "raise ValueError('login failed for ' + os.environ['MY_SERVICE_TOKEN'])")
    res = prodkit("run", "-q", nb, f"paths.runs_dir={runs}", env={"MY_SERVICE_TOKEN": SECRET})
    assert res.returncode == ExitCode.CELL_FAILED
    assert "login failed" in res.stderr and SECRET not in res.stdout + res.stderr
    [rec] = records(runs)
    assert rec.metrics["ok"] == 2 and not any(SECRET in k for k in rec.metrics)
    for p in Path(rec.run_dir).rglob("*"):
        if p.is_file(): assert SECRET not in p.read_text(errors="replace"), p

# --- a runner that can no longer finish ---------------------------------------------------------

STARTED = "(run_dir()/'started.tmp').write_text(str(os.getpid()))\n(run_dir()/'started.tmp').rename(run_dir()/'started')"   # the kernel's pid

def sleeping_run(tmp_path, runs, tag) -> tuple[subprocess.Popen, int]:
    "A `prodkit run` of job `k` whose kernel sleeps: (the runner's process, the kernel's pid) once the sleep began"
    proc = subprocess.Popen([PRODKIT, "run", "-q", notebook(tmp_path/"k.ipynb", STARTED, "time.sleep(120)"), f"paths.runs_dir={runs}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=interruptible, env={**os.environ, "PRODKIT_TEST_TAG": tag})
    [started] = wait_for("*/*/started", runs)
    return proc, int(started.read_text())

def test_a_run_that_never_ended_shows_when_it_started(tmp_path, runs, tag):
    proc, _ = sleeping_run(tmp_path, runs, tag)
    [rec] = records(runs)
    live = prodkit("show", rec.id, "--brief", "--runs-dir", runs)
    assert live.returncode == 0 and live.stdout.startswith(f"running: run {rec.id} of k, started "), live.stdout + live.stderr
    proc.kill(); proc.wait(timeout=30)                     # the record stays `running`, its pid gone
    gone = prodkit("show", rec.id, "--brief", "--runs-dir", runs)
    assert gone.returncode == 0 and "Traceback" not in gone.stderr, gone.stderr
    assert gone.stdout.startswith(f"killed: run {rec.id} of k, started ") and "(the runner process is gone)" in gone.stdout, gone.stdout
    listing = prodkit("runs", "--runs-dir", runs)
    assert listing.returncode == 0 and "killed" in listing.stdout, listing.stderr

def test_sighup_of_the_runner_marks_the_run_killed(tmp_path, runs):
    nb = notebook(tmp_path/"hup.ipynb", STARTED, "time.sleep(120)")
    proc = subprocess.Popen([PRODKIT, "run", "-q", nb, f"paths.runs_dir={runs}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    [started] = wait_for("*/*/started", runs)
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED
    [rec] = records(runs)
    assert rec.status == "killed" and "SIGHUP" in rec.exit_reason
    time.sleep(1)
    assert not Path(f"/proc/{int(started.read_text())}").exists()

def test_a_job_that_damages_its_own_metrics_file_still_ends_its_record(tmp_path, runs):
    nb = notebook(tmp_path/"dm.ipynb", "(run_dir()/'metrics.json').write_text('{not json')")
    res = prodkit("run", "-q", nb, f"paths.runs_dir={runs}")
    assert res.returncode == ExitCode.RUNNER_ERROR and "Traceback" not in res.stderr, res.stderr
    [rec] = records(runs)
    assert rec.status == "failed" and "JSONDecodeError" in rec.exit_reason

@pytest.fixture
def small_disk(tmp_path):
    "A 8 MiB tmpfs (needs root; skipped otherwise)"
    mnt = tmp_path/"disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)

def test_a_full_disk_mid_run_ends_the_record(tmp_path, small_disk):
    runs = small_disk/"runs"
    fill = ("f = open(run_dir()/'fill', 'wb')\ntry:\n    while True: f.write(b'0' * 65536); f.flush()\nexcept OSError: pass\n"
            "f.close(); os.truncate(run_dir()/'fill', os.path.getsize(run_dir()/'fill') - 96 * 1024)")   # 96 KiB left
    nb = notebook(tmp_path/"full.ipynb", fill, "print('x' * 400_000)")
    res = prodkit("run", "-q", nb, f"paths.runs_dir={runs}")
    assert res.returncode == ExitCode.RUNNER_ERROR, res.stderr
    [rec] = records(runs)
    assert rec.status == "failed" and "No space left on device" in rec.exit_reason and rec.ended

# --- interrupted sweeps -------------------------------------------------------------------------

@pytest.fixture
def tag():
    "A tag in the environment of every process a test starts; whatever still carries it at the end is killed"
    import uuid
    from conftest import tagged_processes
    t = uuid.uuid4().hex
    yield t
    for line in tagged_processes(t):
        with __import__("contextlib").suppress(ProcessLookupError): os.kill(int(line.split()[0]), signal.SIGKILL)

SWEPT = (f"n = cfg['job']['params']['n']\n{STARTED}\nrecord(n=n)", "time.sleep(0 if n == 1 else 120)")

@pytest.mark.parametrize("launcher, how", [("joblib", "SIGTERM"), ("submitit_local", "SIGTERM"), ("joblib", "SIGINT to the group"),
                                           ("submitit_local", "SIGINT to the group"), ("basic", "SIGTERM"), ("joblib", "SIGHUP"),
                                           ("submitit_local", "SIGHUP"), ("joblib", "SIGINT to the sweep process"),
                                           ("submitit_local", "SIGINT to the sweep process")])
def test_an_interrupted_sweep_stops_everything_it_started(tmp_path, runs, tag, launcher, how):
    from conftest import tagged_processes
    nb = notebook(tmp_path/"sw.ipynb", *SWEPT)
    proc = subprocess.Popen([PRODKIT, "run", "-m", nb, f"paths.runs_dir={runs}", "+job.params.n=1,2,3", "+job.params.api_key=sk-SWEEPSECRET-123",
                             f"hydra/launcher={launcher}"], stdout=(tmp_path/"out").open("w"), stderr=(tmp_path/"err").open("w"),
                            start_new_session=True, preexec_fn=interruptible, env={**os.environ, "PRODKIT_TEST_TAG": tag})
    wait_for("sw/*/started", runs, n=2 if launcher == "basic" else 3)
    time.sleep(1)
    sig = signal.Signals[how.split()[0]]
    if how.endswith("the group"): os.killpg(proc.pid, sig)
    else: proc.send_signal(sig)                            # the sweep process alone: it passes the signal on
    proc.wait(timeout=90)                                  # files, not pipes: orphans would hold a pipe open
    assert proc.returncode == ExitCode.INTERRUPTED, (tmp_path/"err").read_text()
    time.sleep(1)
    assert tagged_processes(tag) == []                     # no worker, kernel or submitit process outlives the sweep
    recs = {r.metrics["n"]: r for r in records(runs)}
    assert recs[1].status == "succeeded" and all(r.status == "killed" for n, r in recs.items() if n != 1), {n: r.status for n, r in recs.items()}
    assert all(sig.name in r.exit_reason for n, r in recs.items() if n != 1), {n: r.exit_reason for n, r in recs.items()}   # the signal sent
    [sweep_json] = runs.glob("_sweeps/*/sweep.json")
    assert json.loads(sweep_json.read_text())["interrupted"] == sig.name
    listed = json.loads(sweep_json.read_text())["jobs"]
    assert {j["status"] for j in listed} == {"succeeded", "killed"} and len(listed) == len(recs)
    assert not list(runs.rglob("*.pkl"))                   # submitit's pickles (they hold the overrides) are gone
    for p in runs.rglob("*"):
        if p.is_file(): assert "SWEEPSECRET" not in p.read_text(errors="replace"), p

# --- what a killed runner leaves behind ---------------------------------------------------------

def test_the_connection_file_of_a_runner_killed_with_9_is_removed_by_the_next_run(tmp_path, runs, tag):
    import psutil
    from conftest import tagged_processes
    proc, kernel_pid = sleeping_run(tmp_path, runs, tag)
    kernel = psutil.Process(kernel_pid)
    conn = Path(kernel.cmdline()[kernel.cmdline().index("-f") + 1])
    assert conn.exists() and "key" in json.loads(conn.read_text())
    proc.kill(); proc.wait(timeout=30)
    psutil.wait_procs([kernel], timeout=15)                  # the kernel notices its parent is gone
    assert tagged_processes(tag) == []
    again = prodkit("run", "-q", "hello", f"paths.runs_dir={runs}", env={"PRODKIT_TEST_TAG": tag})
    assert again.returncode == 0, again.stderr
    assert not conn.exists()
    assert [r.status for r in __import__("prodkit.jobs.runs", fromlist=["list_runs"]).list_runs(runs, "k")] == ["killed"]   # its record: shown killed

# --- training that diverges, data that says nothing ---------------------------------------------

def test_training_that_diverges_without_nan_fails(tmp_path, runs):
    res = prodkit("run", "-q", "train", "train.lr=1e9", f"paths.runs_dir={runs}", "debug=tiny")
    assert res.returncode == ExitCode.CELL_FAILED, res.stderr
    [rec] = records(runs)
    assert rec.status == "failed" and "training diverged" in rec.exit_reason and "train.divergence_factor" in rec.exit_reason

def test_a_header_only_csv_says_it_has_no_rows(tmp_path, runs):
    empty = tmp_path/"empty.csv"
    empty.write_text(",".join(["target", *[f"f{i}" for i in range(30)]]) + "\n")
    res = prodkit("run", "-q", "train", f"data.path={empty}", "data.source=null", f"paths.runs_dir={runs}", "tracking.mode=disabled")
    assert res.returncode == ExitCode.CELL_FAILED
    [rec] = records(runs)
    assert "the file has no rows" in rec.exit_reason and "not float64" not in rec.exit_reason and len(rec.exit_reason.splitlines()) == 1

def test_quarantined_rows_are_counted_in_the_record_with_the_file_and_its_hash(tmp_path, runs):
    import hashlib
    data_dir = tmp_path/"data"
    res = prodkit("run", "-q", "train", f"paths.data_dir={data_dir}", "data.outliers.action=quarantine", "data.outliers.threshold=4",
                  f"paths.runs_dir={runs}", "debug=tiny", "train.epochs=2")
    assert res.returncode == 0, res.stderr
    [rec] = records(runs)
    [q] = list(data_dir.glob("*.quarantine.csv"))
    n = len(q.read_text().splitlines()) - 1
    assert n > 0 and rec.metrics["rows_quarantined"] == rec.metrics["outlier_rows"] == n
    [entry] = [a for a in rec.artifacts if a["path"] == str(q)]
    assert entry["sha256"] == hashlib.sha256(q.read_bytes()).hexdigest()

def test_an_offline_train_run_leaves_nothing_in_tmpdir(tmp_path, runs):
    (tmpdir := tmp_path/"tmpdir").mkdir()
    res = prodkit("run", "-q", "train", f"paths.runs_dir={runs}", "debug=tiny", "tracking.mode=offline", "train.epochs=2", env={"TMPDIR": str(tmpdir)})
    assert res.returncode == 0, res.stderr
    assert [p.name for p in tmpdir.iterdir()] == []            # no tmp*wandb-media, tmp*wandb-artifacts
    [rec] = records(runs)
    assert not (Path(rec.run_dir)/".tmp").exists() and rec.links.get("wandb_run_id")
