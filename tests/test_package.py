"The generated package: every module imports in a fresh interpreter, and the hygiene checks catch drift."
import json
import shutil
import pkgutil
import pytest
import prodkit
from prodkit.cli.hygiene import HygieneError, check, export_drift, unclean_notebooks
from conftest import PY, ROOT, run

MODULES = sorted(m.name for m in pkgutil.walk_packages(prodkit.__path__, "prodkit.") if not m.ispkg)

def test_package_has_the_library_modules():
    assert {"prodkit.core.config", "prodkit.cli.hygiene"} <= set(MODULES)

@pytest.mark.slow
@pytest.mark.parametrize("mod", MODULES)
def test_module_imports_in_a_fresh_interpreter_from_root_dir(mod):
    res = run(PY, "-c", f"import {mod}", cwd="/")
    assert res.returncode == 0, res.stderr

@pytest.mark.slow
def test_checkout_is_in_sync_and_clean():
    check(ROOT)

@pytest.mark.slow
def test_hand_edited_module_is_detected(project_copy):
    f = project_copy/"prodkit"/"core"/"config.py"
    f.write_text(f.read_text().replace("def compose(", "def compose_edited_by_hand("))
    assert export_drift(project_copy) == ["prodkit/core/config.py"]
    with pytest.raises(HygieneError, match="out of sync.*prodkit/core/config.py"): check(project_copy)

@pytest.mark.slow
def test_notebook_with_outputs_is_detected(project_copy):
    nb_path = project_copy/"nbs"/"core"/"01_config.ipynb"
    nb = json.loads(nb_path.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["execution_count"] = 7
    code["metadata"]["collapsed"] = True
    nb_path.write_text(json.dumps(nb, indent=1))
    assert unclean_notebooks(project_copy) == ["nbs/core/01_config.ipynb"]
    assert export_drift(project_copy) == []

def test_parameters_tag_survives_cleaning(project_copy):
    nb_path = project_copy/"nbs"/"core"/"01_config.ipynb"
    nb = json.loads(nb_path.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["metadata"]["tags"] = ["parameters"]
    nb_path.write_text(json.dumps(nb, indent=1) + "\n")
    run(ROOT/".venv/bin/nbdev-clean", cwd=project_copy, check=True)
    cleaned = json.loads(nb_path.read_text())
    assert next(c for c in cleaned["cells"] if c["cell_type"] == "code")["metadata"] == {"tags": ["parameters"]}

@pytest.mark.slow
def test_hygiene_cli_exit_codes(project_copy):
    ok = run(PY, "-m", "prodkit.cli.hygiene", env={"PRODKIT_ROOT": str(ROOT)})
    assert ok.returncode == 0, ok.stderr
    (project_copy/"prodkit"/"cli"/"hygiene.py").write_text("# edited\n")
    bad = run(PY, "-m", "prodkit.cli.hygiene", env={"PRODKIT_ROOT": str(project_copy)})
    assert bad.returncode == 1 and "prodkit/cli/hygiene.py" in bad.stderr

def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT/".ci"/"run").read_text()
    assert "make test" in (ROOT/"README.md").read_text()

def test_make_help_lists_every_target():
    out = run("make", "-s", "help", check=True).stdout
    for target in ("install", "demo", "export", "test", "notebook", "lab", "bench", "clean"): assert f"make {target}" in out

def test_pre_commit_hook_commits_the_clean_version_and_leaves_the_working_tree(tmp_path):
    repo = tmp_path/"repo"
    (repo/"nbs").mkdir(parents=True)
    shutil.copy2(ROOT/"pyproject.toml", repo)
    (repo/".venv").symlink_to(ROOT/".venv")
    nb = json.loads((ROOT/"nbs"/"core"/"01_config.ipynb").read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["execution_count"], code["metadata"] = 7, {"tags": ["parameters"], "collapsed": True}
    (repo/"nbs"/"x.ipynb").write_text(json.dumps(nb, indent=1) + "\n")
    git = lambda *a: run("git", "-c", "user.name=t", "-c", "user.email=t@t", *a, cwd=repo, check=True)
    git("init", "-q")
    shutil.copy2(ROOT/".githooks"/"pre-commit", repo/".git"/"hooks"/"pre-commit")
    git("add", "nbs/x.ipynb")
    git("commit", "-qm", "x")
    committed = json.loads(git("show", "HEAD:nbs/x.ipynb").stdout)
    cell = next(c for c in committed["cells"] if c["cell_type"] == "code")
    assert cell["execution_count"] is None and cell["metadata"] == {"tags": ["parameters"]}
    assert '"execution_count": 7' in (repo/"nbs"/"x.ipynb").read_text()     # the working tree is the user's

def _band(py) -> int:
    "The number of the notebook a module is exported from (its band): `# ... File to edit: ../../nbs/jobs/25_runner.ipynb.`"
    import re
    m = re.search(r"File to edit: (?:\.\./)+nbs/\w+/(\d+)_\w+\.ipynb", py.read_text())
    assert m, f"{py.name} does not say which notebook it is exported from"
    return int(m.group(1))

def _module(py, root) -> str:
    "`prodkit/jobs/runner.py` -> `jobs.runner`"
    return ".".join(py.relative_to(root).with_suffix("").parts)

def _prodkit_imports(py, root) -> set[str]:
    "prodkit modules (`band.name`) a file imports, at the top or inside functions, absolutely or relatively"
    import ast
    here, out = _module(py, root).split("."), set()
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level: base = here[:len(here) - node.level] + (node.module.split(".") if node.module else [])
            elif (node.module or "").split(".")[0] == "prodkit": base = node.module.split(".")[1:]
            else: continue
            out |= {".".join(base + [a.name]) for a in node.names} if len(base) < 2 else {".".join(base[:2])}
        elif isinstance(node, ast.Import):
            out |= {".".join(a.name.split(".")[1:3]) for a in node.names if a.name.startswith("prodkit.")}
    return out

def _library(root):
    return {_module(p, root): p for p in root.rglob("*.py") if not p.name.startswith("_")}

def test_modules_import_only_from_lower_bands():
    pkg = ROOT/"prodkit"
    mods = _library(pkg)
    assert len(mods) > 30 and all(len(m.split(".")) == 2 for m in mods), sorted(mods)   # every module sits in a band's subpackage
    bands = {m: _band(p) for m, p in mods.items()}
    wrong = [f"{m} ({bands[m]}) imports {i} ({bands[i]})" for m, p in mods.items()
             for i in sorted(_prodkit_imports(p, pkg)) if i in bands and bands[i] >= bands[m] and i != m]
    assert not wrong, "a module imports from its own or a higher band:\n" + "\n".join(wrong)

def test_band_check_sees_an_upward_import(tmp_path):
    (tmp_path/"research").mkdir()
    (tmp_path/"research"/"data.py").write_text("# File to edit: ../../nbs/research/10_data.ipynb.\n"
                                               "from ..core import config\ndef f():\n    from ..jobs.runner import execute\n"
                                               "    from prodkit.serving.infer import x\n")
    assert _prodkit_imports(tmp_path/"research"/"data.py", tmp_path) == {"core.config", "jobs.runner", "serving.infer"}
    assert _band(tmp_path/"research"/"data.py") == 10

def test_readme_lists_every_library_notebook_in_order():
    "The README's notebook table is the reading order: every nbs/BAND/NN_*.ipynb, in number order, with its module"
    import re
    rows = re.findall(r"^\| `(\w+)/(\d+_\w+)\.ipynb` \| `prodkit\.(\w+\.\w+)` \|", (ROOT/"README.md").read_text(), re.M)
    nbs = sorted((ROOT/"nbs").glob("*/[0-9]*_*.ipynb"), key=lambda p: p.name)
    assert [(b, s) for b, s, _ in rows] == [(p.parent.name, p.stem) for p in nbs]
    assert [m for *_, m in rows] == [re.search(r"#\| default_exp ([\w.]+)", p.read_text()).group(1) for p in nbs]

def test_make_demo_prints_the_registry_after_the_pipeline():
    cmds = [line.split("/prodkit ", 1)[1] for line in run("make", "-n", "demo", check=True).stdout.splitlines() if line.startswith(".venv/bin/prodkit ")]
    assert cmds == ["pipeline demo", "registry list"]

def test_the_cli_starts_without_the_heavy_libraries():
    "Every `prodkit` command loads prodkit.cli.main: scipy, pandas and torch come only with the commands that use them (they cost ~2 s)"
    import subprocess, sys
    code = "import sys, prodkit.cli.main; print(sorted(m for m in ('scipy', 'pandas', 'torch', 'pandera', 'onnxruntime') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
