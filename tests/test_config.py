"The config layer: one composed config, validated at compose time, from any working directory."
import pytest
from hydra import compose as hydra_compose, initialize_config_dir
from omegaconf import DictConfig
from prodkit.core.config import as_config, check_targets, compose, conf_dir, ConfigError, to_dict
from conftest import PY, ROOT, run

def test_defaults_and_names_later_issues_rely_on():
    cfg = compose()
    assert isinstance(cfg, DictConfig)
    assert isinstance(cfg.seed, int)
    assert cfg.paths.root == str(ROOT)
    assert cfg.paths.data_dir == f"{ROOT}/data" and cfg.paths.runs_dir == f"{ROOT}/runs"
    assert cfg.tracking.mode == "offline" and isinstance(cfg.tracking.project, str)
    assert set(cfg) >= {"seed", "paths", "data", "model", "train", "tracking"}

def test_overrides_apply_and_interpolations_follow():
    cfg = compose(overrides=["train.epochs=3", "seed=11", "paths.root=/scratch/me", "tracking.mode=disabled"])
    assert (cfg.train.epochs, cfg.seed, cfg.tracking.mode) == (3, 11, "disabled")
    assert cfg.paths.runs_dir == "/scratch/me/runs" and cfg.data.path == "/scratch/me/data/breast_cancer.csv"

def test_repeated_compose_in_one_process_is_independent():
    assert compose(overrides=["seed=1"]).seed == 1
    assert compose().seed == 0
    assert compose(overrides=["seed=2"]).seed == 2

@pytest.mark.parametrize("override, names", [
    ("train.epoch=3", "train.epoch"),          # mistyped key
    ("datta=breast_cancer", "datta"),         # mistyped group
    ("data=nope", "data/nope"),               # unknown option
    ("train.epochs=[1", "[1"),                # unparsable override
])
def test_bad_override_names_the_problem(override, names):
    with pytest.raises(ConfigError, match=None) as e: compose(overrides=[override])
    assert names in str(e.value)

@pytest.mark.parametrize("override, key", [("seed=abc", "seed"), ("train.lr=fast", "train.lr"),
                                           ("tracking.mode=cloud", "tracking.mode"), ("train.epochs=1.5", "train.epochs")])
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(ConfigError) as e: compose(overrides=[override])
    assert key in str(e.value)

def test_missing_value_fails_at_compose_time():
    with pytest.raises(ConfigError, match="data.path"): compose(overrides=["data.path=???"])

def test_forbidden_target_is_refused_at_compose_and_by_check_targets():
    with pytest.raises(ConfigError, match="os.system"): compose(overrides=["+model._target_=os.system"])
    from omegaconf import OmegaConf
    with pytest.raises(ConfigError, match="builtins.eval"): check_targets(OmegaConf.create({"_target_": "builtins.eval", "_args_": ["1"]}))
    check_targets(OmegaConf.create({"_target_": "torch.nn.ReLU"}))          # a torch class is allowed

@pytest.mark.parametrize("target", ["torch.nn.modules.module.torch.load",   # a function reached through torch.nn's namespace
                                    "torch.nn.functional.relu",             # a function, not a class
                                    "prodkit.core.atomic.write_atomic",      # prodkit, but not a model class
                                    "prodkit.research.model.torch.save"])
def test_allow_list_checks_what_a_target_resolves_to(target):
    with pytest.raises(ConfigError, match="not allowed"): compose(overrides=[f"+model._target_={target}"])

def test_compose_from_another_cwd_in_a_fresh_interpreter():
    code = "from prodkit.core.config import compose; c = compose(overrides=['seed=5']); print(c.paths.root, c.seed)"
    res = run(PY, "-c", code, cwd="/", check=True)
    assert res.stdout.split() == [str(ROOT), "5"]

def test_prodkit_root_env_points_to_another_project(project_copy):
    (project_copy/"conf"/"train"/"default.yaml").write_text("epochs: 99\nbatch_size: 8\nlr: 0.1\npatience: 1\n")
    code = "from prodkit.core.config import compose; print(compose().train.epochs)"
    res = run(PY, "-c", code, cwd="/", env={"PRODKIT_ROOT": str(project_copy)}, check=True)
    assert res.stdout.strip() == "99"
    bad = run(PY, "-c", code, cwd="/", env={"PRODKIT_ROOT": "/nonexistent"})
    assert bad.returncode != 0 and "PRODKIT_ROOT=/nonexistent has no conf/config.yaml" in bad.stderr

def test_compose_inside_a_hydra_app_keeps_its_state():
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        assert compose(overrides=["seed=3"]).seed == 3
        assert hydra_compose(config_name="config").seed == 0   # the app's Hydra still works

def test_plain_dict_round_trip_is_read_only():
    d = to_dict(compose(overrides=["train.epochs=4"]))
    assert type(d) is dict and d["tracking"]["mode"] == "offline"
    cfg = as_config(d)
    assert cfg.train.epochs == 4
    with pytest.raises(Exception): cfg.train.epochs = 5

# --- ranges: every number of every group has one, declared next to its field in prodkit.core.schema ----------------

def _schema_classes():
    import inspect
    from dataclasses import is_dataclass
    import prodkit.core.schema as schema
    return [c for _, c in inspect.getmembers(schema, is_dataclass) if c.__module__ == schema.__name__]

def test_every_numeric_setting_has_a_range_and_a_comment():
    from prodkit.core.config import field_doc, field_types
    from prodkit.core.schema import range_of
    numeric = [(c, n) for c in _schema_classes() for n, (_, t, _) in field_types(c).items() if t in (int, float)]
    names = {f"{c.__name__}.{n}" for c, n in numeric}   # nested, list- and dict-typed and optional fields are all seen
    assert {"ServeConfig.port", "PredictionLogConfig.sample", "ColumnSpec.min", "ParityConfig.batch_sizes", "ParityConfig.tolerances",
            "JobConfig.cell_timeout", "ProdkitConfig.seed"} <= names and len(names) >= 60
    missing = [f"{c.__name__}.{n}" for c, n in numeric if range_of(c, n) is None]
    assert not missing, f"numeric settings without a range (declare it with its default: ranged(default, interval)): {missing}"
    assert all(field_doc(c, n) for c, n in numeric)   # the error message and --help show it

@pytest.mark.parametrize("override, message", [
    ("serve.port=-1", "serve.port=-1: must be an integer in [1, 65535] (bind port)"),
    ("serve.port=65536", "serve.port=65536: must be an integer in [1, 65535]"),
    ("serve.workers=0", "serve.workers=0: must be an integer in [1, inf)"),
    ("serve.canary_share=7", "serve.canary_share=7.0: must be a number in [0, 1]"),
    ("serve.log.sample=2", "serve.log.sample=2.0: must be a number in [0, 1]"),
    ("drift.p_value=5", "drift.p_value=5.0: must be a number in (0, 1]"),
    ("drift.min_rows=-3", "drift.min_rows=-3: must be an integer in [1, inf)"),
    ("infer.chunk_size=0", "infer.chunk_size=0: must be an integer in [1, inf)"),
    ("infer.shards=0", "infer.shards=0: must be an integer in [1, inf)"),
    ("export.parity.tolerances.logits=-1", "export.parity.tolerances.logits=-1.0: must be a number in [0, inf)"),
    ("serve.range_margin=-0.5", "serve.range_margin=-0.5: must be a number in [0, inf) or null"),
    ("export.parity.batch_sizes=[1,null,0]", "export.parity.batch_sizes[2]=0: must be an integer in [1, inf) or null"),
    ("serve.baseline.rules=[{feature: x, above: inf, label: '1'}]", "serve.baseline.rules[0].above=inf: must be a number in (-inf, inf)"),
    ("infer.shard=4", "infer.shard=4: must be below infer.shards=1 (shards are numbered 0..0)"),
])
def test_out_of_range_numbers_are_refused_at_compose_time(override, message):
    with pytest.raises(ConfigError) as e: compose(overrides=[override])
    assert message in str(e.value)

def test_shard_must_be_below_shards():
    with pytest.raises(ConfigError, match=r"infer.shard=4: must be below infer.shards=4 \(shards are numbered 0..3\)"):
        compose(overrides=["infer.shard=4", "infer.shards=4"])
    assert compose(overrides=["infer.shard=3", "infer.shards=4"]).infer.shard == 3

def test_a_run_with_an_out_of_range_number_exits_2_before_any_kernel(tmp_path, capsys):
    from prodkit.cli.main import main
    from prodkit.jobs.runs import ExitCode
    runs = tmp_path/"runs"
    assert main(["run", "hello", f"paths.runs_dir={runs}", "serve.port=-1"]) == ExitCode.CONFIG_ERROR
    assert "serve.port=-1: must be an integer in [1, 65535]" in capsys.readouterr().err
    assert not runs.exists()

# --- one definition of each default: the schema's; a group file sets only what its option changes ---------------

def _leaves(d: dict, key: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v: yield from _leaves(v, f"{key}.{k}" if key else k)
        else: yield (f"{key}.{k}" if key else k), v

def test_group_files_do_not_repeat_schema_defaults():
    import yaml
    from omegaconf import OmegaConf
    from prodkit.core.schema import ProdkitConfig
    defaults = OmegaConf.to_container(OmegaConf.structured(ProdkitConfig), enum_to_str=True)
    repeated = []
    for f in sorted(conf_dir().glob("*/*.yaml")):
        text = f.read_text()
        if f.parent.name not in defaults or "@package _global_" in text: continue   # job, experiment, debug: overrides
        for key, v in _leaves(yaml.safe_load(text) or {}):
            default = OmegaConf.select(OmegaConf.create(defaults[f.parent.name] or {}), key, default=object())
            if v == default: repeated.append(f"{f.relative_to(conf_dir())}: {key}: {v!r}")
    assert not repeated, f"these repeat the default in prodkit.core.schema (remove them from the file): {repeated}"

@pytest.mark.parametrize("overrides, expected", [
    ([], {"seed": 0, "model.name": "mlp", "model.hidden": [64, 32], "model.dropout": 0.1, "train.epochs": 30, "train.lr": 1e-3,
          "train.patience": 5, "data.val_fraction": 0.2, "data.outliers.rule": "robust_z", "data.segment": "mean radius",
          "tracking.mode": "offline", "drift.psi_warn": 0.1, "export.opset": 20, "gates.rules.accuracy": "accuracy >= 0.95",
          "registry.promote": True}),
    (["model=cnn"], {"model.name": "cnn", "model.hidden": [64], "model.channels": [16, 32], "model.kernel_size": 3, "model.dropout": 0.1}),
    (["data=digits", "model=cnn"], {"data.name": "digits", "data.input_shape": [1, 8, 8], "data.outliers.rule": "none",
                                    "data.outliers.action": "keep", "data.segment": None, "data.target": "target", "model.hidden": [64]}),
    (["data=synthetic"], {"data.n_rows": 10000, "data.generator_seed": 0, "data.outliers.threshold": 6.0, "data.strict": True}),
    (["debug=tiny"], {"train.epochs": 3, "train.patience": 0, "train.progress": False, "tracking.mode": "disabled", "train.batch_size": 64}),
    pytest.param(["job=drift_report"], {"job.cell_timeout": 600.0, "job.start_retries": 2}, marks=pytest.mark.serving),
])
def test_composed_defaults_are_what_users_got_before_the_yaml_files_were_trimmed(overrides, expected):
    from omegaconf import OmegaConf
    cfg = compose(overrides=overrides)
    got = {k: OmegaConf.select(cfg, k) for k in expected}
    assert {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in got.items()} == expected

# --- experiments (conf/experiment/wide_mlp.yaml) and who wins -------------------------------------------------

def test_experiment_wide_mlp_is_what_the_readme_says(project_copy):
    cfg = compose(overrides=["experiment=wide_mlp"])
    assert (cfg.model.name, list(cfg.model.hidden), cfg.model.dropout, cfg.train.lr) == ("mlp", [256, 128], 0.2, 3e-3)
    plain = compose()
    assert (cfg.train.epochs, cfg.data.name, cfg.model.kernel_size) == (plain.train.epochs, plain.data.name, plain.model.kernel_size)
    # overrides typed on the command line win over the experiment, a group choice included
    cfg = compose(overrides=["experiment=wide_mlp", "model.dropout=0.5", "train.lr=0.01", "model=cnn"])
    assert (cfg.model.name, cfg.model.dropout, cfg.train.lr, list(cfg.model.hidden)) == ("cnn", 0.5, 0.01, [256, 128])
    # the experiment comes after the job in the defaults list, so it wins over what a job file sets
    (project_copy/"conf"/"job"/"sets_lr.yaml").write_text("# @package _global_\njob: {name: sets_lr, notebook: x.ipynb}\n"
                                                          "train: {lr: 0.5, epochs: 4}\nmodel: {dropout: 0.3}\n")
    cfg = compose(overrides=["job=sets_lr", "experiment=wide_mlp"], config_dir=project_copy/"conf")
    assert (cfg.train.lr, cfg.model.dropout, cfg.train.epochs) == (3e-3, 0.2, 4)

@pytest.mark.serving
def test_command_options_are_range_checked_like_overrides(capsys):
    from prodkit.cli.main import main
    assert main(["serve", "--port", "70000"]) == 2
    assert "serve.port=70000: must be an integer in [1, 65535] (bind port)" in capsys.readouterr().err
    assert main(["infer", "in.csv", "out.csv", "--chunk-size", "0"]) == 2 and "infer.chunk_size=0" in capsys.readouterr().err
    assert main(["infer", "in.csv", "out.csv", "--shard", "2", "--shards", "2"]) == 2 and "must be below infer.shards=2" in capsys.readouterr().err

@pytest.mark.serving
def test_command_help_is_the_schema_comment():
    from click.testing import CliRunner
    from prodkit.cli.main import cli
    from prodkit.core.config import field_doc
    from prodkit.core.schema import InferConfig
    out = " ".join(CliRunner().invoke(cli, ["infer", "--help"], terminal_width=400).output.split())
    assert f"{field_doc(InferConfig, 'chunk_size')} [infer.chunk_size]" in out and f"{field_doc(InferConfig, 'range_margin')} [infer.range_margin]" in out

def test_every_architecture_is_a_known_model_name_and_an_unknown_one_exits_2_before_a_kernel(tmp_path):
    "One registry of names (core.config.KNOWN_NAMES) matches the architectures research.model builds; the CLI refuses the rest at compose"
    import subprocess, sys
    from prodkit.core.config import KNOWN_NAMES
    from prodkit.research.model import ARCHITECTURES
    assert tuple(ARCHITECTURES) == KNOWN_NAMES["model.name"]
    r = subprocess.run([f"{sys.prefix}/bin/prodkit", "run", "train", "model.name=nope", f"paths.runs_dir={tmp_path}"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "model.name='nope' is unknown; known: mlp, cnn" in r.stderr, r.stderr
    assert not list(tmp_path.glob("train/*"))                       # no run started

def test_prodkit_config_prints_each_value_with_its_source(tmp_path):
    import subprocess, sys
    r = subprocess.run([f"{sys.prefix}/bin/prodkit", "config", "train", "experiment=diabetes", "train.epochs=5"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = {ln.split(":", 1)[0]: ln for ln in r.stdout.splitlines()}
    assert lines["train.epochs"].endswith("# override") and "5" in lines["train.epochs"]
    assert lines["data.task"].endswith("# conf/data/diabetes.yaml") and lines["job.name"].endswith("# conf/job/train.yaml")
    assert lines["train.lr"].endswith("# schema default") and lines["gates.rules.accuracy"].startswith("gates.rules.accuracy: null")
    bad = subprocess.run([f"{sys.prefix}/bin/prodkit", "config", "nojob"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Could not find 'job/nojob'" in bad.stderr
    ref = subprocess.run([f"{sys.prefix}/bin/prodkit", "config", "--reference"], capture_output=True, text=True, timeout=60)
    assert ref.returncode == 0 and "| `train.lr` | `0.001` | (0, inf) | learning rate |" in ref.stdout and "### `gates` (GatesConfig)" in ref.stdout
