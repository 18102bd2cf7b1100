"""Ablations and cross-validated recipe comparisons on tiny real Keras models."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure
from test_training import TINY_CONFIG, burst_clips

from nexara_lib.evaluation.metrics import metric_function
from nexara_lib.run.params import resolve_params
from nexara_lib.training import study as ablation
from nexara_lib.training.study import Pool, load_ablation_config, run_recipe_study, study_configs
from nexara_lib.training.study_results import group_bootstrap_diff

pytestmark = pytest.mark.slow  # trains every study unit; the smoke run's 03 runs the study end to end

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"


def test_the_overregularized_file_is_the_seed_teams_config():
    name, overrides = load_ablation_config(PARAMS_DIR / "ablation_overregularized.yaml")
    assert name == "overregularized"
    assert 0.5 <= overrides["dropout"] <= 0.6 and overrides["recurrent_dropout"] == 0.3
    assert overrides["augment_factor"] == 10


@pytest.mark.parametrize("path", sorted(PARAMS_DIR.glob("ablation_*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_ablation_loads_and_layers_on_the_base(path):
    name, overrides = load_ablation_config(path)
    assert overrides and name
    layered = resolve_params([PARAMS_DIR / "base.yaml", PARAMS_DIR / "demo.yaml", path])
    assert all(layered[k] == v for k, v in overrides.items())


@pytest.mark.parametrize("content, match", [({"backbone": "flow"}, "not training keys"), ({}, "changes nothing")])
def test_bad_ablation_files_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "ablation_bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ValueError, match=match):
        load_ablation_config(path)


def test_study_configs_layer_each_file_on_the_run_recipe(tmp_path):
    (tmp_path / "ablation_wide.yaml").write_text("dense_units: 99\n")
    params = {**TINY_CONFIG, "ablation_configs": [str(tmp_path / "ablation_wide.yaml")]}
    configs = study_configs(params)
    assert list(configs) == ["default", "wide"]
    assert configs["wide"]["dense_units"] == 99 and configs["wide"]["lstm_units"] == TINY_CONFIG["lstm_units"]
    changed = ablation.changed_keys(configs)
    assert list(changed.index) == ["dense_units"] and changed.loc["dense_units", "wide"] == "99"


def tiny_pool(n_groups=12, per_group=4):
    x, y = burst_clips(n_groups * per_group, seed=3)
    order = np.argsort(y, kind="stable")  # group clips of one label together: groups are single-label
    x, y = x[order], y[order]
    groups = np.repeat([f"rec{i}" for i in range(n_groups)], per_group)
    ids = [f"clip{i:03d}" for i in range(len(y))]
    return Pool(x, y, groups, ids, is_train=np.ones(len(y), dtype=bool))


STUDY_CONFIG = {**TINY_CONFIG, "epochs": 3, "warmup_epochs": 1, "augment_factor": 1, "tensorboard": False}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    configs = {"default": STUDY_CONFIG, "heavy": {**STUDY_CONFIG, "dropout": 0.6, "augment_factor": 2}}
    return run_recipe_study(tiny_pool(), configs, seeds=[1, 2], cv_folds=2, out_dir=out, progress=False), out, configs


def test_study_trains_every_unit_and_scores_each_clip_once_per_seed(study):
    result, out, _ = study
    assert len(result.runs) == 2 * 2 * 2 and not result.runs["reused"].any()
    counts = result.predictions.groupby(["config", "seed"])["clip_id"].agg(["count", "nunique"])
    assert (counts["count"] == 48).all() and (counts["nunique"] == 48).all()
    for metric in ablation.STUDY_METRICS:
        assert result.runs[metric].between(0, 1).all()
    assert (out / "study.json").exists() and (out / "runs.csv").exists()
    assert not list(out.rglob("model.keras"))  # units keep predictions, not models
    summary = result.summary()
    assert list(summary.index) == ["default", "heavy"]
    assert "±" in summary.loc["default", "accuracy"]
    assert list(result.per_fold().columns) == ["fold1", "fold2"]
    comparison = result.comparison(n_bootstrap=50)
    assert comparison.index.tolist() == ["heavy − default"] and "12 source groups" in comparison.index.name
    assert isinstance(result.figure(), Figure) and len(result.figure().axes) == len(ablation.STUDY_METRICS)
    numbers = result.summary_numbers()
    per_seed = result.seed_means()
    expected = per_seed[per_seed["config"] == "heavy"]["accuracy"]
    assert numbers["heavy"]["accuracy"]["mean"] == pytest.approx(expected.mean())
    assert numbers["heavy"]["accuracy"]["std"] == pytest.approx(expected.std(ddof=1))


def test_a_rerun_reuses_finished_units_and_retrains_only_changed_configs(study):
    result, out, configs = study
    again = run_recipe_study(tiny_pool(), configs, seeds=[1, 2], cv_folds=2, out_dir=out, progress=False)
    assert again.runs["reused"].all()
    pd.testing.assert_frame_equal(again.runs.drop(columns="reused"), result.runs.drop(columns="reused"))
    changed = {**configs, "heavy": {**configs["heavy"], "dropout": 0.5}}
    third = run_recipe_study(tiny_pool(), changed, seeds=[1], cv_folds=2, out_dir=out, progress=False)
    assert third.runs.groupby("config")["reused"].all().to_dict() == {"default": True, "heavy": False}


def test_same_seeds_same_numbers_in_a_fresh_folder(study, tmp_path):
    result, _, configs = study
    fresh = run_recipe_study(
        tiny_pool(), {"default": configs["default"]}, seeds=[2], cv_folds=2, out_dir=tmp_path, progress=False
    )
    same = result.runs[(result.runs["config"] == "default") & (result.runs["seed"] == 2)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        fresh.runs.drop(columns=["reused", "seconds"]), same.drop(columns=["reused", "seconds"])
    )


def test_no_study_unless_asked(tmp_path):
    params = {"cv_folds": 0, "ablation_configs": []}
    assert ablation.study_for_run(pd.DataFrame(), None, tmp_path, params, tmp_path) is None


def test_group_bootstrap_resamples_whole_groups():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    groups = np.array(["a", "a", "a", "a", "b", "b", "c", "c"])
    better = np.where(y == 1, 0.9, 0.1)
    worse = np.full(8, 0.4)  # everything non-violent
    fn = metric_function("accuracy")
    diff, low, high = group_bootstrap_diff(y, worse, better, groups, fn, n=200)
    assert diff == pytest.approx(0.5) and low <= diff <= high
    same = group_bootstrap_diff(y, better, better, groups, fn, n=50)
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same non-zero length"):
        group_bootstrap_diff(y, worse, better, groups[:3], fn)
