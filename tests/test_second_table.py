"""A second table beside the demo, made up here as a user's would be: categorical, many exact duplicates, a nullable column,
its own gates. Its model, release, batch scoring and drift must not lean on defaults that only fit the demo."""
import json
import shutil
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run
from prodkit.release.registry import ModelRegistry

PRODKIT = ROOT/".venv/bin/prodkit"

def voyage(n, seed, women=0.5):
    "Passengers: class, sex, port (sometimes unknown); 24 distinct rows in all, so copies across the splits are the rule"
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"pclass": rng.choice([1, 2, 3], n), "sex": np.where(rng.random(n) < women, "f", "m"),
                       "port": rng.choice(["C", "Q", "S", None], n, p=[0.2, 0.1, 0.6, 0.1])})
    p = 0.1 + 0.7 * (df.sex == "f") + 0.15 * (df.pclass == 1)
    return df.assign(survived=np.where(rng.random(n) < p, "yes", "no"))

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "A copy of this project's conf/ and job notebooks with the new table's config beside the demo's, as `prodkit schema` writes it"
    d = tmp_path_factory.mktemp("second")
    root = d/"project"
    shutil.copytree(ROOT/"conf", root/"conf"); shutil.copytree(ROOT/"nbs"/"jobs", root/"nbs"/"jobs")
    voyage(800, 1).to_csv(d/"voyage.csv", index=False)
    env = {"PRODKIT_ROOT": str(root)}
    r = run(PRODKIT, "schema", d/"voyage.csv", "--target", "survived", "-o", root/"conf"/"data"/"voyage.yaml", env=env, cwd=d)
    assert r.returncode == 0, r.stderr
    with open(root/"conf"/"data"/"voyage.yaml", "a") as f:                      # this table's own gates: the demo's 0.95 would block it
        f.write("gates:\n  accuracy: 'accuracy >= 0.6'\n  ece: null\n")
    return d, root, env

@pytest.fixture(scope="module")
def released(project):
    d, root, env = project
    base = ["data=voyage", "tracking.mode=disabled"]
    r = run(PRODKIT, "run", "-q", "train", *base, "train.epochs=15", "train.patience=0", env=env, cwd=d)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    r = run(PRODKIT, "release", *base, "export.speed.repeats=5", "--quiet", env=env, cwd=d)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return d, root, env

@pytest.mark.slow
def test_its_own_model_gates_and_duplicates_are_not_leakage(released):
    d, root, env = released
    reg = ModelRegistry(root/"registry")
    assert reg.model == "voyage" and reg.models() == {"voyage": 1}             # named after its data, in the project's registry
    v = reg.get("production")
    rules = [g["gate"] for g in v.gates]
    assert "accuracy >= 0.6" in rules and not any(r.startswith("ece") for r in rules), rules   # the table's gates, over the defaults
    assert v.metrics["duplicate_rows"] > 100 and v.metrics["leakage_rows"] == 0, v.metrics    # copies of 24 rows are not leaks

@pytest.mark.slow
@pytest.mark.serving
def test_same_population_no_alarm_shifted_population_alert(released):
    "Batch scoring of a fresh sample, missing ports included; drift on it (discrete confidences) is quiet, a shifted one is not"
    d, root, env = released
    voyage(600, 2).drop(columns="survived").to_csv(d/"same.csv", index=False)
    r = run(PRODKIT, "infer", d/"same.csv", d/"same_out.csv", "data=voyage", "-q", env=env, cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["quarantined"] == 0                             # the nullable port's gaps are answered, as in training
    r = run(PRODKIT, "drift", "production", d/"same_out.csv", "--registry", root/"registry", "--json", "-o", d/"same_report", env=env, cwd=d)
    result = json.loads(r.stdout)
    assert r.returncode == 0 and result["status"] == "none", [(f["name"], f["reasons"]) for f in result["features"] + result["outputs"] if f["reasons"]]
    assert {o["name"] for o in result["outputs"]} == {"prediction", "confidence"}
    voyage(600, 3, women=0.95).drop(columns="survived").to_csv(d/"shifted.csv", index=False)
    assert run(PRODKIT, "infer", d/"shifted.csv", d/"shifted_out.csv", "data=voyage", "-q", env=env, cwd=d).returncode == 0
    r = run(PRODKIT, "drift", "production", d/"shifted_out.csv", "--registry", root/"registry", "--json", "-o", d/"shifted_report", env=env, cwd=d)
    result = json.loads(r.stdout)
    assert r.returncode == 2 and {f["name"]: f["status"] for f in result["features"]}["sex"] == "alert"

def test_a_label_of_hundreds_of_values_is_refused_before_training(project):
    d, root, env = project
    rng = np.random.default_rng(4)
    pd.DataFrame({"x": rng.normal(size=600), "code": rng.integers(0, 300, 600)}).to_csv(d/"codes.csv", index=False)
    r = run(PRODKIT, "schema", d/"codes.csv", "--target", "code", "--task", "classification", "-o", root/"conf"/"data"/"codes.yaml", env=env, cwd=d)
    assert r.returncode == 0, r.stderr
    r = run(PRODKIT, "run", "-q", "train", "data=codes", "debug=tiny", env=env, cwd=d)
    assert r.returncode != 0 and "over data.max_classes=100" in r.stdout + r.stderr and "data.task=regression" in r.stdout + r.stderr
