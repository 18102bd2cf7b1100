"""Recipe selection by grouped CV on train + val: candidates, ranking, paired CIs against the runner-up and
the linear probe, and the choices taken from out-of-fold predictions (tiny real models)."""

import json

import numpy as np
import pandas as pd
import pytest
from test_training import TINY_CONFIG, burst_clips

from nexara_lib.config import SCHEMA
from nexara_lib.run.params import resolve_params
from nexara_lib.training.selection import Candidate, choose_from_oof, select_recipe, selection_candidates
from nexara_lib.training.study import Pool

pytestmark = (
    pytest.mark.slow
)  # recipe selection by grouped CV trains dozens of models; the smoke run's 03 covers the study

BASE = {
    **{k: p.default for k, p in SCHEMA.items()},
    **TINY_CONFIG,
    "epochs": 3,
    "warmup_epochs": 1,
    "augment_factor": 1,
    "tensorboard": False,
}


def tiny_pool(shift: float = 0.0, n_groups: int = 12, per_group: int = 4) -> Pool:
    x, y = burst_clips(n_groups * per_group, seed=3)
    order = np.argsort(y, kind="stable")
    x, y = x[order] + shift, y[order]
    groups = np.repeat([f"rec{i}" for i in range(n_groups)], per_group)
    return Pool(x, y, groups, [f"clip{i:03d}" for i in range(len(y))], is_train=np.ones(len(y), dtype=bool))


def test_candidates_cover_stream_sets_baselines_and_ablations(tmp_path):
    (tmp_path / "ablation_wide.yaml").write_text("dense_units: 99\n")
    params = {
        **BASE,
        "streams": ["identity", "motion_crop"],
        "candidate_streams": ["identity"],
        "baseline_models": ["pooled_linear"],
        "ablation_configs": [str(tmp_path / "ablation_wide.yaml")],
    }
    names = [c.name for c in selection_candidates(params)]
    assert names == [
        "default | identity+motion_crop",
        "pooled_linear | identity+motion_crop",
        "wide | identity+motion_crop",
        "default | identity",
        "pooled_linear | identity",
    ]
    by_name = {c.name: c for c in selection_candidates(params)}
    assert by_name["pooled_linear | identity"].config["model"] == "pooled_linear"
    assert by_name["default | identity"].config["streams"] == ["identity"]
    assert by_name["wide | identity+motion_crop"].config["dense_units"] == 99


@pytest.fixture(scope="module")
def selection(tmp_path_factory):
    out = tmp_path_factory.mktemp("selection")
    # two 'stream sets' of the same clips: the second is the first shifted (same information)
    pools = {"a": tiny_pool(), "b": tiny_pool(shift=0.5)}
    candidates = [
        Candidate("default", "a", BASE),
        Candidate("pooled_linear", "a", {**BASE, "model": "pooled_linear"}),
        Candidate("pooled_linear", "b", {**BASE, "model": "pooled_linear"}),
    ]
    return select_recipe(
        pools, candidates, seeds=[1, 2], cv_folds=2, out_dir=out, fold_seed=0, n_bootstrap=200, progress=False
    ), out


def test_every_candidate_is_ranked_on_the_same_folds_and_the_best_wins(selection):
    result, out = selection
    ranking = result.ranking
    assert list(ranking["rank"]) == [1, 2, 3] and set(ranking["candidate"]) == {
        "default | a",
        "pooled_linear | a",
        "pooled_linear | b",
    }
    assert ranking["accuracy"].is_monotonic_decreasing
    assert result.winner.name == ranking.iloc[0]["candidate"]
    folds = {name: study.folds["evaluate"].tolist() for name, study in result.studies.items()}
    assert folds["a"] == folds["b"]  # same clips, same grouped folds: the comparison is paired
    saved = json.loads((out / "selection.json").read_text())
    assert saved["winner"]["name"] == result.winner.name and saved["rank_metric"] == "accuracy"
    assert [row["candidate"] for row in saved["ranking"]] == list(ranking["candidate"])


def test_winner_is_compared_with_runner_up_and_linear_floor_with_paired_cis(selection):
    result, _ = selection
    comps = result.comparisons
    assert comps.iloc[0]["role"] == "runner-up" and comps.iloc[0]["against"] == result.ranking.iloc[1]["candidate"]
    assert (comps["low"] <= comps["difference"]).all() and (comps["difference"] <= comps["high"]).all()
    if result.winner.recipe != "pooled_linear":
        assert "pooled_linear" in " ".join(comps["against"])
    verdict = result.verdict()
    assert result.winner.name in verdict and "95% CI" in verdict
    assert ("not significantly better" in verdict) or ("a significant difference" in verdict)


def test_choices_come_from_out_of_fold_predictions_only(selection):
    result, _ = selection
    assert len(result.oof) == 48  # every train + val clip scored once by a model that never saw it
    assert result.choices["chosen_on"].startswith("out-of-fold")
    assert 0 < result.choices["threshold"] < 1 and result.choices["temperature"] > 0
    assert result.choices["epochs"] >= 1


def test_choose_from_oof_picks_the_separating_threshold():
    oof = pd.DataFrame(
        {"y": [0, 0, 0, 1, 1, 1], "prob": [0.1, 0.2, 0.3, 0.35, 0.6, 0.9], "group": list("abcdef")},
        index=[f"c{i}" for i in range(6)],
    )
    runs = pd.DataFrame({"best_epoch": [3, 5, 9]})
    choices = choose_from_oof(oof, runs)
    assert choices["epochs"] == 5 and 0.3 < choices["threshold"] <= 0.35


def test_selection_needs_cross_validation(tmp_path):
    with pytest.raises(ValueError, match="cv_folds >= 2"):
        select_recipe({"a": tiny_pool()}, [Candidate("default", "a", BASE)], seeds=[1], cv_folds=0, out_dir=tmp_path)
    with pytest.raises(Exception, match="select_recipe"):
        resolve_params([], {"synthetic_clips": 8, "select_recipe": "cv", "cv_folds": 0})


def test_selection_parameters_are_checked_before_any_work():
    with pytest.raises(Exception, match="baseline_models"):
        resolve_params([], {"synthetic_clips": 8, "baseline_models": ["pooled_quadratic"]})
    with pytest.raises(Exception, match="candidate_streams"):
        resolve_params([], {"synthetic_clips": 8, "backbone": "flow", "candidate_streams": ["identity+zoom"]})
    with pytest.raises(Exception, match="streams"):
        resolve_params([], {"synthetic_clips": 8, "backbone": "flow", "streams": ["identity", "identity"]})
