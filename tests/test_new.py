"`prodkit new`, `prodkit update`, `prodkit schema`: a project from this template, offline, that passes its own checks; updates keep the owner's edits."
import json, re, shutil, tomllib
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from conftest import PY, ROOT, run

WORD = re.compile(r"(?<![A-Za-z0-9])prodkit(?=[./:_\"'])")   # the package as a module, path or name; prose may name the template

def table(path):
    "A table nobody in the project wrote: strings with missing values, whole numbers, floats, a string label"
    rng = np.random.default_rng(7); n = 240
    df = pd.DataFrame({"plan": rng.choice(["basic", "pro", "team"], n), "months": rng.integers(1, 60, n), "spend": rng.gamma(2, 30, n).round(2)})
    df.loc[rng.choice(n, 12, replace=False), "spend"] = np.nan
    df.loc[rng.choice(n, 5, replace=False), "plan"] = None
    df["churned"] = np.where((df.months < 12) | (rng.random(n) < 0.1), "yes", "no")
    df.to_csv(path, index=False)
    return path

def cli_of(package, *args, **kw):
    "The command line of `package` (prodkit's, or a generated project's, which has no console script installed)"
    return run(PY, "-c", f"import sys; from {package}.cli.main import main; sys.exit(main())", *args, **kw)

def template_cli(*args, **kw): return cli_of("prodkit", *args, **kw)

@pytest.fixture(scope="module")
def template(tmp_path_factory):
    "This checkout's template as it is now (uncommitted edits too), committed in a repository of its own that a test may change"
    from prodkit.cli.new import render
    tpl = tmp_path_factory.mktemp("template")/"prodkit"
    render(tpl, "prodkit", ROOT)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "the template"]): run("git", "-C", tpl, *args, check=True)
    return tpl

@pytest.fixture(scope="module")
def acme_scoring(template, tmp_path_factory):
    base = tmp_path_factory.mktemp("new")
    r = template_cli("new", base/"acme_scoring", "--defaults", "--data", table(base/"customers.csv"), "--target", "churned",
            cwd=template, env={"PRODKIT_ROOT": str(template)}, check=True)
    assert "created" in r.stdout and "experiment=customers" in r.stdout
    return base/"acme_scoring"

@pytest.mark.slow
def test_the_project_is_the_template_renamed_with_your_table(acme_scoring):
    assert (acme_scoring/"acme_scoring"/"cli"/"main.py").is_file() and not (acme_scoring/"prodkit").exists()
    leftovers = [str(p.relative_to(acme_scoring)) for p in acme_scoring.rglob("*") if p.is_file() and ".git" not in p.parts and p.suffix in (".py", ".ipynb", ".yaml", ".toml")
                 and p.name != ".prodkit-template.json" and WORD.search(p.read_text(errors="replace"))]
    assert leftovers == []
    cfg = (acme_scoring/"conf"/"data"/"customers.yaml").read_text()
    assert "path: ${paths.root}/datasets/customers.csv" in cfg and "{name: churned, dtype: str, isin: ['no', 'yes']}" in cfg
    assert "{name: plan, dtype: str, nullable: true}" in cfg and "{name: months, dtype: int64, min: 0, max: 60}" in cfg
    assert (acme_scoring/"datasets"/"customers.csv").is_file() and (acme_scoring/"conf"/"experiment"/"customers.yaml").is_file()
    assert run("git", "-C", acme_scoring, "branch", "--show-current").stdout.strip() == "main"
    assert run("git", "-C", acme_scoring, "status", "--porcelain").stdout == ""                       # everything committed
    assert json.loads((acme_scoring/".prodkit-template.json").read_text())["package"] == "acme_scoring"

@pytest.mark.slow
def test_the_project_passes_its_own_checks_and_trains_on_your_table(acme_scoring):
    env = {"PYTHONPATH": str(acme_scoring), "ACME_SCORING_ROOT": str(acme_scoring)}
    r = run(PY, "-m", "acme_scoring.cli.hygiene", "check", cwd=acme_scoring, env=env)        # its notebooks export exactly its package
    assert r.returncode == 0, r.stderr
    r = run(Path(PY).parent/"ruff", "check", "--quiet", "acme_scoring", "tests", "bench", cwd=acme_scoring, env=env)
    assert r.returncode == 0, r.stdout[-3000:]
    for nb in ("nbs/core/01_config.ipynb", "nbs/research/16_columns.ipynb"):                    # its notebooks' tests, on its package
        r = run(Path(PY).parent/"nbdev-test", nb, cwd=acme_scoring, env=env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    r = run(PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_config.py", "-k", "not exits_2 and not prints_each_value",
            cwd=acme_scoring, env=env)                                                                # (those two start its console script)
    assert r.returncode == 0, r.stdout[-3000:]
    r = cli_of("acme_scoring", "run", "train", "debug=tiny", "experiment=customers", cwd=acme_scoring, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "succeeded: run" in r.stdout and "accuracy" in r.stdout

def test_every_option_lands_in_the_project(template, tmp_path):
    r = template_cli("new", tmp_path/"p", "--defaults", "--package", "fraud_v2", "--author", "Ada Lovelace", "--license", "MIT",
                "--python", ">=3.11", "--description", 'Card "fraud" scores', cwd=template, env={"PRODKIT_ROOT": str(template)})
    assert r.returncode == 0, r.stderr
    pp = (tmp_path/"p"/"pyproject.toml").read_text()
    assert 'name = "fraud_v2"' in pp and 'authors = [{name = "Ada Lovelace"}]' in pp and 'license = {text = "MIT"}' in pp
    assert 'requires-python = ">=3.11"' in pp and 'fraud_v2 = "fraud_v2.cli.main:main"' in pp
    assert tomllib.loads(pp)["project"]["description"] == 'Card "fraud" scores'          # still TOML, the quotes escaped
    assert (tmp_path/"p"/"README.md").read_text().startswith('# fraud_v2\n\nCard "fraud" scores')
    assert (tmp_path/"p"/"datasets").exists() == (template/"datasets").exists()   # no table given, none added (a project's own stays)
    assert "mode" not in (tmp_path/"p"/"conf"/"tracking"/"default.yaml").read_text().replace("tracking.mode", "")   # offline: the schema's default

def test_task_and_tracking_land_in_the_config(template, tmp_path):
    df = pd.DataFrame({"rooms": [2, 3, 4, 5] * 10, "area": np.linspace(40, 140, 40), "floor": [0, 1, 2, 3, 4] * 8})
    df.to_csv(tmp_path/"flats.csv", index=False)
    r = template_cli("new", tmp_path/"p", "--defaults", "--data", tmp_path/"flats.csv", "--target", "floor", "--task", "regression",
                     "--tracking", "disabled", env={"PRODKIT_ROOT": str(template)})
    assert r.returncode == 0, r.stderr
    p = tmp_path/"p"
    assert "\ntask: regression\n" in (p/"conf"/"data"/"flats.yaml").read_text()     # five whole numbers would be classes, unless told
    assert "  - override /gates: regression\n" in (p/"conf"/"experiment"/"flats.yaml").read_text()
    assert (p/"conf"/"tracking"/"default.yaml").read_text().endswith("\nmode: disabled\n")
    r = cli_of("p", "config", "experiment=flats", cwd=p, env={"PYTHONPATH": str(p), "P_ROOT": str(p)})
    assert r.returncode == 0, r.stderr
    assert re.search(r"tracking\.mode: disabled +# conf/tracking/default.yaml", r.stdout), r.stdout
    assert re.search(r"data\.task: regression +# conf/data/flats.yaml", r.stdout) and "gates.rules.r2" in r.stdout

@pytest.mark.parametrize("args,msg", [(["--package", "Bad-Name"], "Python identifier"), (["--package", "json"], "already a module"),
                                      (["--data", "t.csv"], "--data needs --target"), (["--data", "nope.csv", "--target", "y"], "no such file"),
                                      (["--task", "regression"], "--task needs --data"),
                                      (["--data", "t.csv", "--target", "s", "--task", "regression"], "holds text: a regression needs numbers")])
def test_bad_options_are_refused_and_leave_nothing(template, tmp_path, args, msg):
    (tmp_path/"t.csv").write_text("a,y,s\n1,0,x\n")
    r = template_cli("new", tmp_path/"p", "--defaults", *args, cwd=tmp_path, env={"PRODKIT_ROOT": str(template)})
    assert r.returncode == 2 and msg in r.stderr and not (tmp_path/"p").exists()

def test_a_folder_in_use_is_refused(template, tmp_path):
    (tmp_path/"p").mkdir(); (tmp_path/"p"/"notes.txt").write_text("mine")
    r = template_cli("new", tmp_path/"p", "--defaults", env={"PRODKIT_ROOT": str(template)})
    assert r.returncode == 2 and "not empty" in r.stderr and (tmp_path/"p"/"notes.txt").read_text() == "mine"

@pytest.mark.slow
def test_update_merges_a_template_change_and_keeps_the_owners_edit(template, tmp_path):
    env = {"PRODKIT_ROOT": str(template)}
    assert template_cli("new", tmp_path/"p", "--defaults", env=env).returncode == 0
    p = tmp_path/"p"
    mk = p/"Makefile"; mk.write_text(mk.read_text() + "\nmine: ## the owner's own target\n\t@echo mine\n")
    run("git", "-C", p, "commit", "-qam", "my target", check=True)
    hooks = p/".git"/"hooks"; shutil.copy2(p/".githooks"/"pre-commit", hooks/"pre-commit")   # as its `make install` does: it needs its venv
    tmk = template/"Makefile"; tmk.write_text(tmk.read_text().replace("PYTHON ?= python3", "PYTHON ?= python3.11"))
    run("git", "-C", template, "commit", "-qam", "template: python3.11", check=True)
    r = template_cli("update", p, env=env)
    assert r.returncode == 0 and "merged the template update" in r.stdout, r.stderr
    text = mk.read_text()
    assert "PYTHON ?= python3.11" in text and "mine: ## the owner's own target" in text
    assert template_cli("update", p, env=env).stdout.strip() == "the template has not changed since the last update"
    (p/"README.md").write_text("dirty"); r = template_cli("update", p, env=env)
    assert r.returncode == 1 and "uncommitted changes" in r.stderr

@pytest.mark.slow
def test_no_serving_leaves_serving_out_and_the_rest_works(template, tmp_path):
    "--no-serving: no serving or monitoring band, command, job, test or Dockerfile; what is left passes its checks, trains and releases"
    env = {"PRODKIT_ROOT": str(template)}
    assert template_cli("new", tmp_path/"lean", "--defaults", "--no-serving", env=env).returncode == 0
    p = tmp_path/"lean"
    gone = ["lean/serving", "lean/monitoring", "nbs/serving", "nbs/monitoring", "lean/cli/serve.py", "nbs/jobs/batch_infer.ipynb",
            "conf/job/drift_report.yaml", "tests/test_serve.py", "bench/serve.py", "Dockerfile", "conf/pipeline/drill.yaml"]
    assert [g for g in gone if (p/g).exists()] == [] and (p/"lean"/"release"/"registry.py").is_file() and (p/"Makefile").is_file()
    readme = (p/"README.md").read_text()
    assert "`serving/51_serve.ipynb`" not in readme and "`release/33_registry.ipynb`" in readme and "without serving (`--no-serving`)" in readme
    assert "serving/*" not in (p/"docs"/"index.md").read_text() and "release/*" in (p/"docs"/"index.md").read_text()
    assert run("git", "-C", p, "status", "--porcelain").stdout == ""
    penv = {"PYTHONPATH": str(p), "LEAN_ROOT": str(p)}
    assert run(PY, "-m", "lean.cli.hygiene", "check", cwd=p, env=penv).returncode == 0
    r = run(Path(PY).parent/"ruff", "check", "--quiet", "lean", "tests", "bench", cwd=p, env=penv)
    assert r.returncode == 0, r.stdout[-3000:]
    commands = cli_of("lean", "--help", cwd=p, env=penv).stdout
    assert "pipeline" in commands and "release" in commands and not re.search(r"(?m)^  (serve|infer|explain|drift) ", commands), commands
    r = run(PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_config.py", "-k", "not exits_2 and not prints_each_value",
            cwd=p, env=penv)
    assert r.returncode == 0 and re.search(r"\d+ passed, \d+ deselected", r.stdout), r.stdout[-3000:]   # its serving tests: deselected
    r = run(PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "tests", cwd=p, env=penv)
    assert r.returncode == 0, r.stdout[-3000:]                                                # every test module imports without serving
    r = cli_of("lean", "pipeline", "demo", f"paths.runs_dir={tmp_path/'runs'}", f"registry.path={tmp_path/'reg'}", "debug=tiny",
               "gates.only=['parity_max_abs <= 1e-4']", cwd=p, env=penv)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "pipeline demo succeeded: 2 steps" in r.stdout + r.stderr, r.stdout + r.stderr                      # train, release
    tmk = template/"Makefile"; tmk.write_text(tmk.read_text() + "\n# a later template change\n")
    run("git", "-C", template, "commit", "-qam", "template: a note", check=True)
    hooks = p/".git"/"hooks"; shutil.copy2(p/".githooks"/"pre-commit", hooks/"pre-commit")
    r = template_cli("update", p, env=env)
    assert r.returncode == 0 and "merged the template update" in r.stdout, r.stderr
    assert (p/"Makefile").read_text().endswith("# a later template change\n") and [g for g in gone if (p/g).exists()] == []   # still out

@pytest.mark.slow
def test_a_wheel_carries_the_template_and_needs_no_checkout(template, tmp_path):
    from prodkit.cli.new import TEMPLATE_ARCHIVE, pack_template
    pack_template(template, template/"prodkit"/TEMPLATE_ARCHIVE)                  # what `make wheel` does first
    run(PY, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path/"dist", template, check=True)
    wheel, = (tmp_path/"dist").glob("prodkit-*.whl")
    site = tmp_path/"site"; shutil.unpack_archive(wheel, site, "zip")               # the installed package: no .git, no conf/ beside it
    env = {"PYTHONPATH": str(site), "PRODKIT_ROOT": ""}
    r = run(PY, "-c", "import sys, prodkit; from prodkit.cli.main import main; print(prodkit.__file__); sys.exit(main())", "new", "acme_scoring", "--defaults",
            cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(site/"prodkit")), r.stdout                       # it ran from the wheel, not this checkout
    assert (tmp_path/"acme_scoring"/"acme_scoring"/"cli"/"new.py").is_file() and (tmp_path/"acme_scoring"/"conf"/"config.yaml").is_file()
    head = run("git", "-C", template, "rev-parse", "HEAD", check=True).stdout.strip()
    assert json.loads((tmp_path/"acme_scoring"/".prodkit-template.json").read_text())["template_commit"] == head
    assert not (tmp_path/"acme_scoring"/"acme_scoring"/TEMPLATE_ARCHIVE).exists()                   # the archive is not part of itself

def test_schema_writes_a_config_the_data_passes(tmp_path):
    r = template_cli("schema", table(tmp_path/"t.csv"), "--target", "churned", "-o", tmp_path/"t.yaml")
    assert r.returncode == 0 and "review it" in r.stderr
    pd.read_csv(tmp_path/"t.csv").to_parquet(tmp_path/"t.parquet")
    from omegaconf import OmegaConf
    from prodkit.core.config import compose
    from prodkit.research.data import load_dataset
    data = OmegaConf.merge(compose().data, OmegaConf.load(tmp_path/"t.yaml"), {"path": str(tmp_path/"t.parquet")})
    assert len(load_dataset(data).frame) == 240          # the Parquet copy passes the schema inferred from the CSV
