"The config layer: one composed config, validated at compose time, from any working directory."
import pytest
from hydra import compose as hydra_compose, initialize_config_dir
from omegaconf import DictConfig
from prodkit.config import as_config, check_targets, compose, conf_dir, ConfigError, to_dict
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
                                    "prodkit.atomic.write_atomic",      # prodkit, but not a model class
                                    "prodkit.model.torch.save"])
def test_allow_list_checks_what_a_target_resolves_to(target):
    with pytest.raises(ConfigError, match="not allowed"): compose(overrides=[f"+model._target_={target}"])

def test_compose_from_another_cwd_in_a_fresh_interpreter():
    code = "from prodkit.config import compose; c = compose(overrides=['seed=5']); print(c.paths.root, c.seed)"
    res = run(PY, "-c", code, cwd="/", check=True)
    assert res.stdout.split() == [str(ROOT), "5"]

def test_prodkit_root_env_points_to_another_project(project_copy):
    (project_copy/"conf"/"train"/"default.yaml").write_text("epochs: 99\nbatch_size: 8\nlr: 0.1\npatience: 1\n")
    code = "from prodkit.config import compose; print(compose().train.epochs)"
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
