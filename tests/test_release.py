"Release: ONNX export and parity, gates, the release job and CLI end to end, refusals. One tiny training run per session."
import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from prodkit.core.config import ConfigError, compose
from prodkit.release.onnx import export_onnx, onnx_metadata, ort_session, parity_report, read_onnx_metadata
from prodkit.release.registry import ModelRegistry, RegistryError
from prodkit.release.release import ReleaseError, load_train_run, release, holdout_arrays
from prodkit.jobs.runner import run_job
from conftest import PY, ROOT, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    "Overrides pointing runs, data and the registry into a scratch dir, and one tiny succeeded train run there"
    d = tmp_path_factory.mktemp("release")
    base = [f"paths.runs_dir={d}/runs", f"paths.data_dir={d}/data", f"registry.path={d}/registry", "tracking.mode=disabled"]
    tiny = ["data=synthetic", "data.n_rows=600", "data.n_features=6", "model.hidden=[16]", "train.epochs=10", "train.lr=0.01", "train.progress=false"]
    rec = run_job("train", base + tiny, progress=False)
    assert rec.status == "succeeded", rec.exit_reason
    return dict(dir=d, base=base, tiny=tiny, run=rec)


@pytest.fixture(scope="session")
def trained(project):
    return load_train_run(project["run"].id, project["dir"]/"runs")


@pytest.fixture(scope="session")
def dynamo_onnx(trained):
    "The tiny model exported with the default settings (dynamo, opset 20)"
    cfg = compose()
    meta = onnx_metadata(trained.model, trained.reference_stats, trained.record.id, trained.split.data_version, "w" * 64)
    return export_onnx(trained.model, cfg.export, meta)


def test_dynamo_export_parity_at_several_batch_sizes(trained, dynamo_onnx):
    data, facts = dynamo_onnx
    assert facts["exporter"] == "dynamo" and facts["opset"] == 20
    x, _ = holdout_arrays(trained)
    rep = parity_report(trained.model, data, x, [1, 7, 256, 1000, None])
    assert rep["passed"], rep["failures"]
    assert sorted({r["batch"] for r in rep["rows"]}) == sorted({1, 7, 256, 1000, len(x)})
    assert {r["output"] for r in rep["rows"]} == {"probabilities", "logits"} and rep["max_abs"] < 1e-5


def test_onnx_file_is_self_contained_and_carries_the_serving_contract(trained, dynamo_onnx, tmp_path):
    data, _ = dynamo_onnx
    (tmp_path/"m.onnx").write_bytes(data)
    meta = read_onnx_metadata(tmp_path/"m.onnx")
    assert meta == read_onnx_metadata(data)
    assert meta["format"] == "prodkit.onnx/1" and meta["training_run_id"] == trained.record.id
    i = meta["input"]
    assert (i["name"], i["dtype"], i["shape"], i["features"]) == ("input", "float32", [None, 6], trained.model.inputs.features)
    assert set(i["ranges"]) == set(i["features"]) and all(r["min"] <= r["max"] for r in i["ranges"].values())
    assert "float32" in i["note"] and meta["output"] == {"name": "probabilities", "task": "classification", "labels": ["0", "1"], "logits": "logits"}
    sess = ort_session(tmp_path/"m.onnx")                           # a path alone: no sidecar file needed
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "logits"]
    assert sess.get_inputs()[0].shape == ["batch", 6]


def test_a_model_altered_after_export_fails_parity_saying_where(trained, dynamo_onnx):
    altered = copy.deepcopy(trained.model)
    with torch.no_grad(): altered.net.layers[0].weight[0, 0] += 1.0
    x, _ = holdout_arrays(trained)
    rep = parity_report(altered, dynamo_onnx[0], x, [1, 7, 256])
    assert not rep["passed"] and rep["max_abs"] > 1e-3
    assert rep["failures"][0].startswith("batch 1, output probabilities: max |onnx - torch| = ") or \
        rep["failures"][0].startswith("batch 1, output logits: max |onnx - torch| = ")
    assert "(row " in rep["failures"][0] and ", class " in rep["failures"][0]


def test_a_model_failing_parity_is_not_registered(project, trained, tmp_path):
    cfg = compose(overrides=[*project["base"], f"registry.path={tmp_path}/reg", "export.dynamo=false", "export.speed.repeats=5",
                             "export.parity.tolerances={probabilities: 0.0, logits: 0.0}"])   # any difference at all fails
    rep = release(cfg, trained, tmp_path/"out")
    assert rep["version"] is None and rep["refused"].startswith("parity failed: batch 1, output probabilities")
    assert ModelRegistry(tmp_path/"reg").versions() == []


def test_gates_block_promotion_with_the_gate_and_the_shortfall(project, trained, tmp_path):
    over = [*project["base"], f"registry.path={tmp_path}/reg", "export.dynamo=false", "export.speed.repeats=5"]
    ok = release(compose(overrides=over + ["gates.only=['accuracy >= 0.5', 'leakage_rows <= 0', 'onnx_mb <= 50']"]), trained, tmp_path/"a")
    assert ok["promoted"] and ok["gates_passed"]
    strict = compose(overrides=over + ["gates.only=['accuracy >= 0.999', 'ece <= 0.5']"])
    bad = release(strict, trained, tmp_path/"b", registry=ModelRegistry(tmp_path/"reg2"))
    acc = bad["measured"]["accuracy"]
    assert not bad["promoted"] and bad["refused"] == f"not promoted: gate `accuracy >= 0.999` failed: accuracy = {acc:.4g} is {0.999 - acc:.4g} below 0.999"
    reg2 = ModelRegistry(tmp_path/"reg2")
    assert reg2.aliases() == {"candidate": 1}
    with pytest.raises(RegistryError, match="v1 cannot be promoted: gate `accuracy >= 0.999` failed"): reg2.promote(1)


def test_a_real_production_model_on_the_same_rows_blocks_a_candidate(project, trained, tmp_path):
    "The production model is measured on the candidate's test rows: the same model cannot beat itself by 0.001"
    from prodkit.research.split import InputSpec
    from prodkit.research.model import build_model
    over = [*project["base"], f"registry.path={tmp_path}/reg", "export.dynamo=false", "export.speed.repeats=5"]
    first = release(compose(overrides=over + ["gates.only=['accuracy >= 0.5']"]), trained, tmp_path/"a")
    assert first["promoted"] and first["aliases"]["production"] == 1
    better = compose(overrides=over + ["gates.only=['accuracy >= 0.5', 'accuracy >= production + 0.001']"])
    rep = release(better, trained, tmp_path/"b")
    acc = rep["measured"]["accuracy"]
    assert rep["production"] == {"name": "production (v1)", "version": 1, "metrics": rep["production"]["metrics"]}
    assert rep["production"]["metrics"]["accuracy"] == acc                        # really measured, on the same rows
    g = rep["gates"][1]
    assert (g["passed"], g["relative"], g["threshold"], g["margin"]) == (False, True, pytest.approx(acc + 0.001), pytest.approx(-0.001))
    assert rep["refused"] == f"not promoted: gate `accuracy >= production + 0.001` failed: accuracy = {acc:.4g} is 0.001 below {acc + 0.001:.4g}"
    reg = ModelRegistry(tmp_path/"reg")
    assert reg.aliases() == {"candidate": 2, "production": 1} and reg.get(2).baseline == 1
    # a production model that reads other features cannot run on these rows: the comparison fails, it does not pass
    spec = InputSpec(["a", "b"], "target", 2, [2], [0.0, 0.0], [1.0, 1.0])
    other = build_model(compose().model, spec, seed=0).eval()
    reg.register(export_onnx(other, compose(overrides=["export.dynamo=false"]).export, onnx_metadata(other))[0], who="test")
    reg.promote(3)
    rep = release(compose(overrides=over + ["gates.only=['accuracy >= production - 0.01']"]), trained, tmp_path/"c")
    assert rep["production"] == {"name": "production (v3)", "version": 3, "metrics": {}} and not rep["promoted"]
    assert rep["refused"] == "not promoted: gate `accuracy >= production - 0.01` failed: production (v3) accuracy could not be measured on this test set"


def test_an_unknown_gate_metric_is_refused_at_compose_time():
    with pytest.raises(ConfigError, match=r"gates.only\[0\]: gate 'precision >= 0.9': unknown metric 'precision'"):
        compose(overrides=["gates.only=['precision >= 0.9']"])
    with pytest.raises(ConfigError, match="is not `metric op threshold`"): compose(overrides=["gates.only=['accuracy high']"])


def test_leakage_gate_counts_test_rows_seen_in_training(trained):
    from prodkit.release.gates import leakage_rows
    s = trained.split
    f = trained.model.inputs.features
    assert leakage_rows(s.train, s.test, f) == 0
    assert leakage_rows(s.train, s.test.iloc[:3].assign(**{c: s.train.iloc[0][c] for c in f}), f) == 3


def test_release_cli_end_to_end_then_rollback(project):
    d, base = project["dir"], project["base"]
    rel = ["export.speed.repeats=20", "gates.only=['accuracy >= 0.5', 'parity_max_abs <= 1e-4', 'accuracy >= production - 0.01']"]
    r = run(ROOT/".venv/bin/prodkit", "release", project["run"].id[:6], *base, *rel, "tracking.mode=offline", "--quiet")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "parity: ok" in r.stdout and "promoted to production" in r.stdout and "accuracy >= 0.5" in r.stdout
    reg = ModelRegistry(d/"registry")
    v = reg.get("production")
    from prodkit.research.tracking import read_offline_run             # the ONNX file is a wandb model artifact, linked from the version
    logged = read_offline_run(v.links["wandb_dir"])
    pin = f"sha256-{v.onnx_sha256[:12]}"                        # `latest` moves with the next release; this alias names this file only
    art = [a for a in logged["artifacts"] if a["name"] == "synthetic-mlp-onnx"]
    assert [(a["type"], a["files"], sorted(a["aliases"])) for a in art] == [("model", ["model.onnx"], ["latest", pin])] and logged["exit_code"] == 0
    assert v.links["wandb_artifact"] == f"synthetic-mlp-onnx:{pin}" and v.links["wandb_artifact_digest"] == art[0]["digest"]
    assert v.links["wandb_run_id"] == logged["run_id"]
    assert v.run_id == project["run"].id and v.links["train_run_id"] == project["run"].id and v.export["exporter"] == "dynamo"
    assert v.provenance["config_hash"] == project["run"].config_hash and v.reference_stats["columns"]
    release_run = json.loads((d/"runs"/"release").glob("*/run.json").__next__().read_text())
    assert release_run["status"] == "succeeded" and release_run["links"]["registry_version"] == f"v{v.version}"
    assert release_run["links"]["wandb_artifact"] == v.links["wandb_artifact"] and release_run["links"]["wandb_artifact_digest"] == art[0]["digest"]
    output = (Path(release_run["run_dir"])/"output.ipynb").read_text()
    assert "wandb" in output and "Failed to detect the name of this notebook" not in output     # no spurious wandb ERROR in the job's output
    # a forced promotion of the same version again is a no-op; a second version then rollback in one step
    r = run(ROOT/".venv/bin/prodkit", "registry", "--registry", d/"registry", "register", project["run"].id, *base, *rel[1:], "export.dynamo=false",
            "export.speed.repeats=5")
    assert r.returncode == 0, r.stderr
    n = max(x.version for x in reg.versions())
    assert n == v.version + 1 and reg.aliases()["candidate"] == n and reg.aliases()["production"] == v.version
    assert run(ROOT/".venv/bin/prodkit", "registry", "--registry", d/"registry", "promote", str(n)).returncode == 0
    assert reg.aliases() | {} == {"candidate": n, "production": n, "previous": v.version}
    r = run(ROOT/".venv/bin/prodkit", "registry", "--registry", d/"registry", "rollback", "--reason", "test")
    assert r.returncode == 0 and reg.aliases()["production"] == v.version
    h = run(ROOT/".venv/bin/prodkit", "registry", "--registry", d/"registry", "history").stdout
    assert "rollback" in h and "test" in h


def test_a_run_id_that_reads_as_a_number_is_released(project, tmp_path):
    "Run ids are 8 hex digits: `1234e567` must reach the release job as a string, not as the float it looks like"
    src, runs = project["run"].path, tmp_path/"runs"
    dst = runs/"train"/f"{src.name.rsplit('-', 1)[0]}-1234e567"
    shutil.copytree(src, dst)
    rec = json.loads((dst/"run.json").read_text())
    (dst/"run.json").write_text(json.dumps(rec | {"id": "1234e567", "run_dir": str(dst)}))
    r = run(ROOT/".venv/bin/prodkit", "release", "1234e567", *project["base"], f"paths.runs_dir={runs}", f"registry.path={tmp_path}/reg",
            "export.dynamo=false", "export.speed.repeats=5", "gates.only=['accuracy >= 0.5']", "--quiet")
    assert r.returncode == 0 and "v1 from run 1234e567: promoted to production" in r.stdout, r.stdout + r.stderr

@pytest.mark.serving
def test_the_demo_pipeline_passes_run_ids_as_strings():
    from types import SimpleNamespace
    from prodkit.jobs.pipeline import interpolate, load_pipeline
    steps = {st.name: st for st in load_pipeline("demo")[2]}
    train = {"train": SimpleNamespace(id="1234e567", run_dir="/runs/train/x-1234e567")}
    for step, job, key in (("release", "release", "run"), ("shift", "shift_data", "train_run")):
        cfg = compose(overrides=[f"job={job}", *(interpolate(o, train) for o in steps[step].overrides)])
        assert cfg.job.params[key] == "1234e567", (step, cfg.job.params[key])

def test_release_refuses_a_missing_or_failed_run_clearly(project, tmp_path):
    base = project["base"]
    r = run(ROOT/".venv/bin/prodkit", "release", "deadbeef", *base)
    assert r.returncode == 2 and "cannot release: no run 'deadbeef'" in r.stderr
    for cmd in (["release"], ["registry", "register"]):       # overrides only: the latest succeeded run, not a run named "train.epochs=1"
        r = run(ROOT/".venv/bin/prodkit", *cmd, "train.epochs=1", *base, f"paths.runs_dir={tmp_path}/empty")
        assert r.returncode == 2 and f"no succeeded train run under {tmp_path}/empty" in r.stderr, r.stderr
    nb = tmp_path/"boom.ipynb"
    nb.write_text(json.dumps({"cells": [{"id": "p", "cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "cfg = {}", "outputs": [], "execution_count": None},
                                        {"id": "b", "cell_type": "code", "metadata": {}, "source": "raise RuntimeError('boom')", "outputs": [], "execution_count": None}],
                              "metadata": {"kernelspec": {"name": "prodkit", "display_name": "prodkit", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}))
    failed = run_job(str(nb), base, progress=False)
    assert failed.status == "failed"
    r = run(ROOT/".venv/bin/prodkit", "release", failed.id, *base)
    assert r.returncode == 2 and f"cannot release run {failed.id} (boom): it failed (cell In [" in r.stderr, r.stderr
    with pytest.raises(ReleaseError, match="no succeeded train run"): load_train_run(None, tmp_path/"nothing")


def test_a_cnn_exports_with_a_flat_input_and_keeps_parity():
    "The contract's input is a flat row for every architecture: the CNN reshapes inside the graph"
    from prodkit.research.split import InputSpec
    from prodkit.research.model import build_model
    import numpy as np
    spec = InputSpec([f"p{i}" for i in range(64)], "target", 10, [1, 8, 8], [0.0] * 64, [1.0] * 64)
    model = build_model(compose(overrides=["model=cnn"]).model, spec, seed=0).eval()
    data, facts = export_onnx(model, metadata=onnx_metadata(model))
    sess = ort_session(data)
    assert sess.get_inputs()[0].shape == ["batch", 64] and sess.get_outputs()[0].shape == ["batch", 10]
    x = np.random.default_rng(0).normal(size=(300, 64)).astype(np.float32)
    assert parity_report(model, data, x)["passed"]
    assert read_onnx_metadata(data)["input"]["example_shape"] == [1, 8, 8]


def test_dynamo_export_output_is_quiet_but_real_warnings_pass(tmp_path):
    code = """
import warnings
from prodkit.core.config import compose
from prodkit.research.split import InputSpec
from prodkit.research.model import build_model
from prodkit.release.onnx import export_onnx
m = build_model(compose().model, InputSpec(["a", "b"], "y", 2, [2], [0.0, 0.0], [1.0, 1.0]))
export_onnx(m)
warnings.warn("a real warning after the export")
print("exported")
"""
    r = run(PY, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "exported\n", r.stdout
    assert "torchvision" not in r.stderr and "LeafSpec" not in r.stderr and "✅" not in r.stderr
    assert "a real warning after the export" in r.stderr


def test_two_tables_are_two_models_in_one_registry_and_release_picks_each_ones_latest_run(project, tmp_path):
    "Issue 19: a penguins release never meets the synthetic model's production version; a bare release takes its own table's run"
    reg_dir = tmp_path/"registry"
    pen = run_job("train", project["base"] + ["experiment=penguins", "debug=tiny"], progress=False)   # trained after the synthetic run
    assert pen.status == "succeeded", pen.exit_reason
    for data in (["data=synthetic", "data.n_rows=600", "data.n_features=6"], ["experiment=penguins"]):
        cfg = compose(overrides=project["base"] + data + [f"registry.path={reg_dir}", "export.dynamo=false", "export.speed.repeats=20",
                                                         "gates.only=['parity_max_abs <= 1e-4']"])
        trained = load_train_run(None, project["dir"]/"runs", cfg.registry.model)   # no run named: the latest of this model
        assert trained.record.id == (pen.id if "experiment=penguins" in data else project["run"].id)
        rep = release(cfg, trained, tmp_path/cfg.registry.model)
        assert (rep["model"], rep["version"], rep["promoted"]) == (cfg.registry.model, 1, True)
    assert ModelRegistry(reg_dir, "penguins").aliases() == {"candidate": 1, "production": 1}
    assert ModelRegistry(reg_dir, "synthetic").get("production").run_id == project["run"].id
    with pytest.raises(RegistryError, match="holds models penguins, synthetic: name one"): ModelRegistry(reg_dir)
    from click.testing import CliRunner
    from prodkit.cli.release import registry
    out = CliRunner().invoke(registry, ["--registry", str(reg_dir), "models"]).output
    assert [line.split() for line in out.splitlines()[1:]] == [["penguins", "1", "v1"], ["synthetic", "1", "v1"]]
