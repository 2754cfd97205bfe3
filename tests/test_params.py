"""Papermill notebooks as prodkit jobs: papermill's own test notebooks, notebook parameters the papermill way
(-p/-y/-f, job.params, job files, sweeps), refusals before any kernel, one failure banner, authoring hygiene."""
import importlib.resources
import json, shutil, signal, subprocess, time
from pathlib import Path
import nbformat
import pytest
from prodkit.cli.main import main
from prodkit.jobs.runs import ExitCode, RunRecord
from conftest import PY, ROOT, interruptible, run
from test_runner import PRODKIT, prodkit, records

PM_NOTEBOOKS = importlib.resources.files("papermill")/"tests"/"notebooks"   # shipped inside papermill's wheel: used in place

PARAMS_CELL = '''msg = None
alpha: float = 0.6  # learning rate
dates: list = []  # the days to load
n = 3  # type: int
'''

def pm_notebook(path: Path, params: str | None = PARAMS_CELL, body: str = "") -> Path:
    "A notebook as papermill users write it: a parameters cell of plain names, then a cell that writes what it got"
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    if params is not None: nb.cells.append(nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}))
    nb.cells.append(nbformat.v4.new_code_cell(body or "import json\nopen('got.json', 'w').write(json.dumps(dict(msg=msg, alpha=alpha, dates=dates, n=n)))"))
    nbformat.write(nb, path)
    return path

def got(rec: RunRecord) -> dict: return json.loads((Path(rec.run_dir)/"got.json").read_text())

# --- refused before any kernel starts (no run directory is created) -------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["-p", "alpha", "fast"], "parameter 'alpha' expects float (its default: 0.6), got 'fast' (str)"),
    (["job.params.n=2.5"], "parameter 'n' expects int (its default: 3), got 2.5 (float)"),
    (["-y", "dates: 5"], "parameter 'dates' expects list"),
    (["-p", "alpah", "0.3"], "unknown notebook parameter 'alpah'; the parameters cell declares: msg, alpha, dates, n"),
    (["job.params.beta=1"], "unknown notebook parameter 'beta'"),
])
def test_wrong_parameters_are_refused_before_any_kernel(tmp_path, capsys, args, message):
    runs = tmp_path/"runs"
    assert main(["run", str(pm_notebook(tmp_path/"nb.ipynb")), f"paths.runs_dir={runs}", *args]) == ExitCode.CONFIG_ERROR
    assert message in capsys.readouterr().err
    assert not runs.exists()

def test_parameters_for_a_notebook_without_a_parameters_cell_are_refused(tmp_path, capsys):
    runs = tmp_path/"runs"
    assert main(["run", str(PM_NOTEBOOKS/"no_parameters.ipynb"), f"paths.runs_dir={runs}", "-p", "msg", "hi"]) == ExitCode.CONFIG_ERROR
    assert "no cell tagged `parameters`, so it has no place for parameters (msg)" in capsys.readouterr().err
    assert not runs.exists()

@pytest.mark.slow
def test_params_lists_type_default_and_help(tmp_path, capsys):
    nb = str(pm_notebook(tmp_path/"nb.ipynb"))
    for args in (["params", nb], ["run", nb, "--help-params"]):
        assert main(args) == 0
        lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:-1]}
        assert lines["alpha"].split()[1:4] == ["float", "0.6", "learning"] and "the days to load" in lines["dates"]
        assert "int" in lines["n"] and "any" in lines["msg"]
    res = prodkit("params", PM_NOTEBOOKS/"complex_parameters.ipynb")    # the console script; papermill's own example of `# type:`
    assert "List[str]" in res.stdout and "Nice list" in res.stdout and "Variable a" in res.stdout

# --- papermill's test notebooks, run by papermill and by prodkit --------------------------------------------------

# Where prodkit differs from papermill on purpose (everything else must match papermill: success or the error's name).
DIFFERENCES = {
    "blank-vscode": ("succeeded", None),       # no kernelspec: papermill refuses, prodkit runs it on the project's kernel
    "test_autosave": ("succeeded", None),      # kernelspec `python`: a Python notebook runs on the project's kernel
    "line_magic_error": ("failed", "UsageError: Line magic function `%undefined-line-magic` not found"),  # papermill: CellExecutionError
    "notimplemented_translator": ("failed", "needs the Jupyter kernel 'r', which is not installed; `jupyter kernelspec list`"),
}
SKIP = {"binder": "runs papermill's CLI on a relative path in a bash cell", "keyboard_interrupt": "sleeps 60 s (see the SIGINT test)"}
PM_NAMES = sorted(p.name[:-6] for p in PM_NOTEBOOKS.iterdir() if p.name.endswith(".ipynb") and p.name[:-6] not in SKIP)

def papermill_outcome(nb: Path, out: Path) -> tuple[str, str | None]:
    "What papermill itself does: ('succeeded', None) or ('failed', the error's name)"
    import papermill
    out.parent.mkdir(parents=True, exist_ok=True)
    try: papermill.execute_notebook(str(nb), str(out), progress_bar=False, cwd=str(out.parent))
    except papermill.PapermillExecutionError as e: return "failed", e.ename
    except Exception as e: return "failed", type(e).__name__
    return "succeeded", None

@pytest.fixture(scope="module")
def papermill_outcomes(tmp_path_factory):
    "What papermill does on each of its notebooks, run in a thread pool (kernels mostly wait)"
    from concurrent.futures import ThreadPoolExecutor
    d = tmp_path_factory.mktemp("papermill")
    with ThreadPoolExecutor(4) as pool:
        outs = pool.map(lambda n: papermill_outcome(Path(str(PM_NOTEBOOKS/f"{n}.ipynb")), d/n/"out.ipynb"), PM_NAMES)
        return dict(zip(PM_NAMES, outs))

@pytest.mark.slow
@pytest.mark.parametrize("name", PM_NAMES)
def test_papermill_test_notebooks_run_as_papermill_runs_them(tmp_path, name, papermill_outcomes):
    nb = Path(str(PM_NOTEBOOKS/f"{name}.ipynb"))
    expected = papermill_outcomes[name]
    runs = tmp_path/"runs"
    code = main(["run", "-q", str(nb), f"paths.runs_dir={runs}"])     # in-process: the same command, without a second start-up
    [rec] = records(runs)
    status, reason = DIFFERENCES.get(name, expected)
    assert rec.status == status, (expected, rec.exit_reason)
    if status == "succeeded": assert code == 0 and rec.exit_reason is None
    else:
        assert code == (ExitCode.KERNEL_START if name == "notimplemented_translator" else ExitCode.CELL_FAILED)
        assert reason in rec.exit_reason, rec.exit_reason     # the error's name (SyntaxError, AssertionError, SystemExit, ...)
    out = nbformat.read(Path(rec.run_dir)/"output.ipynb", as_version=4)
    tags = [t for c in out.cells for t in c.get("metadata", {}).get("tags", [])]
    assert "papermill-error-cell-tag" not in tags        # one banner and one anchor: prodkit's
    assert tags.count("prodkit-error") == (0 if status == "succeeded" else 1 if name == "notimplemented_translator" else 2)
    if name.startswith(("sysexit", "systemexit")):       # sys.exit ends the run where it is called
        assert "Cell should not execute." not in json.dumps(out.cells[-1].get("outputs", []))
    if name == "notimplemented_translator": assert out.metadata.kernelspec.language == "R"   # never rewritten to Python

@pytest.mark.slow
def test_papermill_parameters_reach_the_notebook_as_with_papermill(tmp_path):
    import papermill
    nb = Path(str(PM_NOTEBOOKS/"simple_execute.ipynb"))
    papermill.execute_notebook(str(nb), str(tmp_path/"pm.ipynb"), parameters={"msg": "it's \"hi\""}, progress_bar=False)
    res = prodkit("run", "-q", nb, f"paths.runs_dir={tmp_path/'runs'}", "-p", "msg", "it's \"hi\"")
    assert res.returncode == 0, res.stderr
    [rec] = records(tmp_path/"runs")
    printed = lambda p: [o.get("text") for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code" and "print(msg)" in c.source for o in c.outputs]
    assert printed(Path(rec.run_dir)/"output.ipynb") == printed(tmp_path/"pm.ipynb") == ["it's \"hi\"\n"]
    assert rec.params == {"msg": "it's \"hi\""}

# --- parameters the papermill way and the Hydra way ------------------------------------------------------------

@pytest.mark.slow
def test_parameters_from_p_y_f_hydra_and_a_job_file(project_copy, tmp_path):
    nb = pm_notebook(project_copy/"nbs"/"pm.ipynb")
    (project_copy/"conf"/"job"/"pm.yaml").write_text("# @package _global_\njob:\n  name: pm\n  notebook: nbs/pm.ipynb\n  params: {alpha: 0.5, msg: pinned}\n")
    (tmp_path/"p.yaml").write_text("dates: [2024-01-01]\nn: 7\n")
    env, runs = {"PRODKIT_ROOT": str(project_copy)}, tmp_path/"runs"
    res = run(PRODKIT, "run", "-q", nb, f"paths.runs_dir={runs}", "-p", "alpha", "1", "-y", "msg: hi", "-f", tmp_path/"p.yaml", env=env)
    assert res.returncode == 0, res.stderr
    res = run(PRODKIT, "run", "-q", "pm", f"paths.runs_dir={runs}", "job.params.dates=[1,2]", env=env)
    assert res.returncode == 0, res.stderr
    first, second = records(runs)
    assert got(first) == {"msg": "hi", "alpha": 1.0, "dates": ["2024-01-01"], "n": 7}       # -p 1 for a float: 1.0
    assert got(second) == {"msg": "pinned", "alpha": 0.5, "dates": [1, 2], "n": 3}        # the job file pins, the cell defaults the rest
    assert second.params == got(second)                                                      # run.json lists what was used

@pytest.mark.slow
def test_sweep_over_notebook_parameters(tmp_path):
    runs = tmp_path/"runs"
    res = prodkit("run", "-m", pm_notebook(tmp_path/"nb.ipynb"), f"paths.runs_dir={runs}", "job.params.alpha=0.1,0.3", "-p", "msg", "swept",
                  "hydra/launcher=basic")
    assert res.returncode == 0, res.stderr
    assert sorted((got(r)["alpha"], got(r)["msg"]) for r in records(runs)) == [(0.1, "swept"), (0.3, "swept")]
    assert "job.params.alpha=0.1" in res.stdout and "++" not in res.stdout

@pytest.mark.slow
def test_secret_parameters_are_redacted_in_the_record(tmp_path):
    nb = pm_notebook(tmp_path/"nb.ipynb", "api_key = 'sk-default-123456'\nn = 1", "print(n)")
    res = prodkit("run", "-q", nb, f"paths.runs_dir={tmp_path/'runs'}", "-p", "n", "2")
    assert res.returncode == 0, res.stderr
    [rec] = records(tmp_path/"runs")
    assert rec.params == {"api_key": "***REDACTED***", "n": 2}
    assert "sk-default-123456" not in (Path(rec.run_dir)/"run.json").read_text()

# --- failures that read once -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_rerun_of_a_failed_output_has_one_banner(tmp_path):
    runs = tmp_path/"runs"
    prodkit("run", "-q", PM_NOTEBOOKS/"broken1.ipynb", f"paths.runs_dir={runs}")
    [first] = records(runs)
    again = tmp_path/"again.ipynb"
    shutil.copy(Path(first.run_dir)/"output.ipynb", again)          # an output notebook, banners and injected cell included
    res = prodkit("run", "-q", again, f"paths.runs_dir={runs}")
    assert res.returncode == ExitCode.CELL_FAILED
    [rec] = [r for r in records(runs) if r.job == "again"]
    cells = nbformat.read(Path(rec.run_dir)/"output.ipynb", as_version=4).cells
    tagged = [(i, c.metadata.tags) for i, c in enumerate(cells) if c.get("metadata", {}).get("tags")]
    [anchor] = [i for i, c in enumerate(cells) if 'id="prodkit-error"' in c.source]
    assert [t for _, t in tagged] == [["prodkit-error"], ["injected-parameters"], ["prodkit-error"]] and "#prodkit-error" in cells[0].source
    assert cells[anchor + 1].source == "assert False" and "AssertionError" in rec.exit_reason

@pytest.mark.slow
def test_sigint_names_the_signal_and_marks_the_cell(tmp_path):
    runs = tmp_path/"runs"
    proc = subprocess.Popen([PRODKIT, "run", "-q", PM_NOTEBOOKS/"keyboard_interrupt.ipynb", f"paths.runs_dir={runs}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(json.loads(p.read_text()).get("cells", [{}])[-1].get("metadata", {}).get("papermill", {}).get("status") == "running"
                                                  for p in runs.glob("*/*/output.ipynb") if p.stat().st_size): time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED
    [rec] = records(runs)
    assert (rec.status, rec.exit_reason) == ("killed", "interrupted by SIGINT")
    cells = nbformat.read(Path(rec.run_dir)/"output.ipynb", as_version=4).cells
    assert "#prodkit-error" in cells[0].source and 'id="prodkit-error"' in cells[-2].source      # the link has its anchor
    assert "interrupted by SIGINT" in cells[-1].outputs[-1].text

# --- authoring ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_make_notebook_from_a_jupytext_file_passes_the_hygiene_check(project_copy, tmp_path):
    src = tmp_path/"16_scaler.py"
    src.write_text('# %% [markdown]\n# # Scaler\n#\n# > Scale.\n\n# %%\n#| default_exp research.scaler\n\n# %%\n#| export\n'
                   'def scale(x: float, k: float = 2.0) -> float:\n    "`x` times `k`"\n    return x * k\n\n# %%\nassert scale(2) == 4\n')
    shutil.copy(ROOT/"Makefile", project_copy)   # `-o install`: a copy must never reinstall this venv (editable) from itself
    res = run("make", "-o", "install", "notebook", f"FROM={src}", f"VENV={ROOT/'.venv'}", cwd=project_copy)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "def scale" in (project_copy/"prodkit"/"research"/"scaler.py").read_text()
    assert (project_copy/"nbs"/"research"/"16_scaler.ipynb").is_file()
    res = run(PY, "-m", "prodkit.cli.hygiene", env={"PRODKIT_ROOT": str(project_copy)})
    assert res.returncode == 0, res.stderr
    res = run("make", "-o", "install", "notebook", "NAME=release/35_blank", f"VENV={ROOT/'.venv'}", cwd=project_copy)
    assert res.returncode == 0 and (project_copy/"prodkit"/"release"/"blank.py").exists(), res.stderr
    assert "#| default_exp release.blank" in (project_copy/"nbs"/"release"/"35_blank.ipynb").read_text()
    assert run(PY, "-m", "prodkit.cli.hygiene", env={"PRODKIT_ROOT": str(project_copy)}).returncode == 0
    bad = run("make", "-o", "install", "notebook", "NAME=nowhere/55_x", f"VENV={ROOT/'.venv'}", cwd=project_copy)
    assert bad.returncode != 0 and "no band 'nowhere'" in bad.stderr and not (project_copy/"nbs"/"nowhere").exists()

def test_install_stamp_ignores_the_time_nbdev_export_gives_pyproject():
    (ROOT/"pyproject.toml").touch()
    assert run("make", "-q", "install").returncode == 0    # up to date: nothing to reinstall

@pytest.mark.slow
def test_jupyterlab_opens_new_notebooks_on_the_prodkit_kernel():
    code = ("from jupyter_server.serverapp import ServerApp\nfrom jupyter_server.services.kernels.kernelmanager import MappingKernelManager\n"
            "app = ServerApp(); app.load_config_file(); print(MappingKernelManager(config=app.config).default_kernel_name)")
    res = run(PY, "-c", code, cwd="/")
    assert res.stdout.strip().splitlines()[-1] == "prodkit", res.stderr

@pytest.mark.slow
def test_a_notebook_for_another_language_runs_on_its_own_kernel(tmp_path):
    "A kernelspec for language R (here a Python kernel in disguise, marked by an environment variable) is used as it is"
    import sys
    spec = tmp_path/"jupyter"/"kernels"/"fake-r"
    spec.mkdir(parents=True)
    (spec/"kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                                "display_name": "Fake R", "language": "R", "env": {"FAKE_R_KERNEL": "yes"}}))
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "fake-r", "language": "R", "display_name": "Fake R"}})
    nb.cells = [nbformat.v4.new_code_cell('msg = "default"', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import os, json\nopen('got.json', 'w').write(json.dumps([msg, os.environ.get('FAKE_R_KERNEL'), 'cfg' in dir()]))")]
    nbformat.write(nb, tmp_path/"r.ipynb")
    res = run(PRODKIT, "run", "-q", tmp_path/"r.ipynb", f"paths.runs_dir={tmp_path/'runs'}", "-p", "msg", "hi",
              env={"JUPYTER_PATH": str(tmp_path/"jupyter")})
    assert res.returncode == 0, res.stderr
    [rec] = records(tmp_path/"runs")
    assert json.loads((Path(rec.run_dir)/"got.json").read_text()) == ["hi", "yes", False]   # its kernel, papermill's R injection, no cfg
    assert nbformat.read(Path(rec.run_dir)/"output.ipynb", as_version=4).metadata.kernelspec.name == "fake-r"
