"The data step: materialized files, schema checks that report everything, outlier policies, seeded splits, reference stats."
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from prodkit.core.config import compose, ConfigError
from prodkit.research.data import DataError, SchemaError, load_dataset, materialize, write_csv_atomic
from prodkit.research.split import reference_stats, row_hash, split_dataset
from prodkit.core.atomic import write_json


def data_cfg(tmp_path, *overrides):
    return compose(overrides=[f"paths.data_dir={tmp_path}", *overrides]).data


def test_breast_cancer_is_materialized_once_and_versioned_by_its_bytes(tmp_path):
    cfg = data_cfg(tmp_path)
    ds = load_dataset(cfg)
    path = tmp_path/"breast_cancer.csv"
    assert ds.path == path and ds.frame.shape == (569, 31)
    assert ds.version == hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns
    assert load_dataset(cfg).version == ds.version and path.stat().st_mtime_ns == mtime   # read, not rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["breast_cancer.csv"]                 # no temporary file left
    assert ds.provenance()["sha256"] == ds.version


def test_swapping_the_data_group_swaps_the_problem(tmp_path):
    digits = data_cfg(tmp_path, "data=digits")
    sd = split_dataset(load_dataset(digits), digits, seed=0)
    assert (sd.inputs.n_features, sd.inputs.n_classes, sd.inputs.input_shape) == (64, 10, [1, 8, 8])
    syn = data_cfg(tmp_path, "data=synthetic", "data.n_rows=2500", "data.n_features=7")
    ds = load_dataset(syn)
    assert ds.frame.shape == (2500, 9) and ds.path.name == "synthetic_2500x7_seed0.csv"
    assert split_dataset(ds, syn).inputs.features == [f"x{i}" for i in range(7)]   # `segment` is excluded


def test_synthetic_data_is_seeded(tmp_path):
    a = load_dataset(data_cfg(tmp_path/"a", "data=synthetic", "data.n_rows=300")).version
    b = load_dataset(data_cfg(tmp_path/"b", "data=synthetic", "data.n_rows=300")).version
    c = load_dataset(data_cfg(tmp_path/"c", "data=synthetic", "data.n_rows=300", "data.generator_seed=1")).version
    assert a == b != c


def test_schema_violations_of_several_kinds_are_reported_together(tmp_path):
    cfg = data_cfg(tmp_path)
    good = pd.read_csv(materialize(cfg))
    bad = good.astype({"mean texture": object})
    bad.loc[[12, 40, 41], "mean radius"] = np.nan          # nulls where none are allowed
    bad.loc[5, "mean area"] = -5.0                          # out of range
    bad.loc[3, "mean texture"] = "abc"                      # wrong dtype
    bad.loc[[7, 8], "target"] = 2                           # unknown label
    bad = bad.drop(columns=["worst area"]).assign(surprise=1)  # a missing and an undeclared column
    path = tmp_path/"bad.csv"
    write_csv_atomic(bad, path)
    with pytest.raises(SchemaError) as e: load_dataset(data_cfg(tmp_path, f"data.path={path}"))
    msg, problems = str(e.value), e.value.problems
    assert f"{path} breaks the schema of data=breast_cancer (6 problems)" in msg
    for expected in ["column 'mean radius': 3 missing values (row 12: nan, row 40: nan, row 41: nan)",
                     "column 'mean area': 1 value fails in_range(0.0, 6000.0) (row 5: -5.0)",
                     "column 'mean texture': 1 value that is not float64 (row 3: 'abc')",
                     "column 'target': 2 values fail isin([0, 1]) (row 7: 2, row 8: 2)",
                     "column 'worst area': missing from the file",
                     "column 'surprise': not declared in the schema (data.strict=true)"]:
        assert expected in problems, (expected, problems)
    assert len(e.value.failures) >= 8      # pandera's full table, one row per failing value


def test_nullable_and_non_strict_columns_are_accepted_when_declared(tmp_path):
    cfg = data_cfg(tmp_path)
    frame = pd.read_csv(materialize(cfg)).assign(note="x")
    frame.loc[3, "mean radius"] = np.nan
    path = tmp_path/"lenient.csv"; write_csv_atomic(frame, path)
    cfg = data_cfg(tmp_path, f"data.path={path}", "data.strict=false", "data.exclude=[note]")
    cfg.columns[0].nullable = True      # `mean radius`
    ds = load_dataset(cfg)
    assert np.isnan(ds.frame.loc[3, "mean radius"]) and "note" in ds.frame
    assert "note" not in split_dataset(ds, cfg).inputs.features


@pytest.fixture
def with_outliers(tmp_path):
    "500 synthetic gaussian rows, three of them far out in two columns"
    frame = load_dataset(data_cfg(tmp_path, "data=synthetic", "data.n_rows=500", "data.n_features=4")).frame
    frame.loc[[3, 4], "x0"] = 50.0
    frame.loc[9, "x2"] = -40.0
    path = tmp_path/"outliers.csv"; write_csv_atomic(frame, path)
    return path


@pytest.mark.parametrize("rule, threshold", [("robust_z", 10), ("iqr", 5)])
@pytest.mark.parametrize("action", ["keep", "clip", "quarantine"])
def test_outlier_policy_is_honoured_and_no_row_is_lost_silently(tmp_path, with_outliers, action, rule, threshold):
    cfg = data_cfg(tmp_path, "data=synthetic", f"data.path={with_outliers}", f"data.outliers.rule={rule}",
                   f"data.outliers.threshold={threshold}", f"data.outliers.action={action}")
    ds = load_dataset(cfg)
    rep = ds.outliers
    assert (rep.rows, rep.by_column, rep.action) == ([3, 4, 9], {"x0": 2, "x2": 1}, action)
    if action == "keep":
        assert len(ds.frame) == 500 and ds.frame.loc[3, "x0"] == 50.0
    if action == "clip":
        lo, hi = next(e["bounds"] for e in rep.examples if e["row"] == 3)
        assert len(ds.frame) == 500 and ds.frame.loc[3, "x0"] == hi < 50.0 and ds.frame.loc[9, "x2"] > -40.0
        assert ds.frame.loc[10:, "x0"].equals(pd.read_csv(with_outliers).loc[10:, "x0"])   # the rest untouched
    if action == "quarantine":
        q = pd.read_csv(rep.quarantine_path)
        assert rep.quarantine_path == str(with_outliers.with_suffix(".quarantine.csv"))
        assert len(ds.frame) + len(q) == 500 and list(q["_row"]) == [3, 4, 9]
        assert list(q["_outlier_columns"]) == ["x0", "x0", "x2"]
        assert not set(ds.frame.index) & {3, 4, 9}
    assert ds.provenance()["outliers"]["rows"] == [3, 4, 9]   # recorded in the run whatever the action


def test_outlier_action_is_validated_at_compose_time():
    with pytest.raises(ConfigError, match="keep, clip, quarantine"): compose(overrides=["data.outliers.action=drop"])


def test_split_is_seeded_disjoint_stratified_and_recorded_as_row_hashes(tmp_path):
    cfg = data_cfg(tmp_path)
    ds = load_dataset(cfg)
    a, b, c = split_dataset(ds, cfg, seed=0), split_dataset(ds, cfg, seed=0), split_dataset(ds, cfg, seed=1)
    assert a.row_hashes == b.row_hashes and a.row_hashes["test"] != c.row_hashes["test"]
    assert a.row_hashes["train"] == row_hash(a.train.index) == row_hash(list(reversed(a.train.index)))
    idx = [set(p.index) for p in (a.train, a.val, a.test)]
    assert not (idx[0] & idx[1] or idx[0] & idx[2] or idx[1] & idx[2]) and len(idx[0] | idx[1] | idx[2]) == 569
    share = [p.target.mean() for p in (a.train, a.val, a.test)]
    assert max(share) - min(share) < 0.02
    rec = a.summary()
    assert rec["data_version"] == ds.version and rec["rows"] == {"train": 341, "val": 114, "test": 114} and rec["seed"] == 0


def test_bad_split_settings_fail_with_the_setting_named(tmp_path):
    with pytest.raises(ConfigError, match=r"data.val_fraction \+ data.test_fraction = 1.1: must be below 1"):   # at compose time
        data_cfg(tmp_path, "data.val_fraction=0.6", "data.test_fraction=0.5")
    cfg = data_cfg(tmp_path)
    cfg.val_fraction, cfg.test_fraction = 0.6, 0.5                          # a config changed after composing: split checks again
    with pytest.raises(DataError, match="data.val_fraction=0.6 and data.test_fraction=0.5"): split_dataset(load_dataset(cfg), cfg)


def test_missing_file_without_source_says_what_to_do(tmp_path):
    cfg = data_cfg(tmp_path, f"data.path={tmp_path}/mine.csv", "data.source=null")
    with pytest.raises(DataError, match="not found and data.source is not set"): load_dataset(cfg)
    with pytest.raises(DataError, match="known sources: sklearn:breast_cancer"): load_dataset(data_cfg(tmp_path, "data.source=s3:x"))


def test_reference_stats_are_json_with_histograms_quantiles_and_labels(tmp_path):
    cfg = data_cfg(tmp_path, "data=synthetic", "data.n_rows=1000", "data.n_features=3")
    sp = split_dataset(load_dataset(cfg), cfg, seed=0)
    path = write_json(tmp_path/"reference_stats.json", reference_stats(sp.train, cfg, bins=10, data_version=sp.data_version), redacted=False)
    stats = json.loads(path.read_text())
    assert stats["rows"] == len(sp.train) == 600 and stats["data_version"] == sp.data_version
    assert sum(v["count"] for v in stats["labels"].values()) == 600
    assert abs(sum(v["fraction"] for v in stats["labels"].values()) - 1) < 1e-12
    x0 = stats["columns"]["x0"]
    assert len(x0["histogram"]["edges"]) == 11 and sum(x0["histogram"]["counts"]) == 600
    assert x0["quantiles"]["0.0"] == x0["min"] and x0["quantiles"]["1.0"] == x0["max"]
    assert sum(stats["columns"]["segment"]["values"].values()) == 600
    assert "target" not in stats["columns"]
