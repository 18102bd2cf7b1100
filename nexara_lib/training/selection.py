"""Recipe selection by grouped cross-validation on train + val, and what the winner carries forward.

Every candidate (the run's recipe on each candidate stream set, the pooled baselines on each, the
ablation files on the run's streams) is trained with the same seeds on the same grouped folds of
the development pool (``study``). They are ranked by out-of-fold accuracy (mean over seeds); the
winner is compared with the runner-up and with ``pooled_linear`` by a paired bootstrap over source
groups. On a few hundred clips a fixed validation split of ~30 clips decides badly, so the
winner's out-of-fold predictions choose instead: the number of epochs (median best epoch of its
units), the operating threshold and the temperature. The test split is never read here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nexara_lib.evaluation.calibration import fit_temperature
from nexara_lib.evaluation.metrics import metric_function
from nexara_lib.evaluation.predictions import Predictions
from nexara_lib.evaluation.stats import ci_excludes_zero
from nexara_lib.evaluation.thresholds import choose_threshold
from nexara_lib.io import write_json_atomic
from nexara_lib.training.study import BASELINE, Pool, plan_study, run_studies, study_configs
from nexara_lib.training.study_results import RecipeStudy, group_bootstrap_diff
from nexara_lib.training.study_units import StudyExecution

LINEAR_FLOOR = "pooled_linear"  # the floor every sequence model must beat on the same folds
RANK_METRIC = "accuracy"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One recipe on one stream set."""

    recipe: str  # 'default', a baseline model name, or an ablation file's name
    streams: str  # the stream set, '+'-joined
    config: dict  # the full parameter mapping it trains with

    @property
    def name(self) -> str:
        return f"{self.recipe} | {self.streams}"


def stream_set_names(params: Mapping[str, Any]) -> list[str]:
    """The stream sets compared: ``candidate_streams``, always including the run's own ``streams``."""
    run_set = "+".join(params["streams"])
    names = list(dict.fromkeys([run_set, *params["candidate_streams"]]))
    return names


def selection_candidates(params: Mapping[str, Any]) -> list[Candidate]:
    """Every candidate: per stream set the run's recipe and each of ``baseline_models``; the ablation
    files of ``ablation_configs`` on the run's own streams."""
    run_set = "+".join(params["streams"])
    recipes = study_configs(params)  # bad ablation files fail here, before any training
    out = []
    for streams in stream_set_names(params):
        with_streams = {**params, "streams": streams.split("+")}
        out.append(Candidate(BASELINE, streams, with_streams))
        out.extend(Candidate(model, streams, {**with_streams, "model": model}) for model in params["baseline_models"])
        if streams == run_set:
            out.extend(Candidate(name, streams, cfg) for name, cfg in recipes.items() if name != BASELINE)
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(
            f"two candidates share a name in {names}; an ablation file may not be named like a baseline model"
        )
    return out


@dataclasses.dataclass
class Selection:
    """The ranking of every candidate, the winner and what its out-of-fold predictions chose."""

    ranking: pd.DataFrame  # one row per candidate, best first
    winner: Candidate
    comparisons: pd.DataFrame  # winner minus runner-up / pooled_linear: paired CIs over source groups
    oof: pd.DataFrame  # the winner's out-of-fold predictions (mean over seeds) per clip
    choices: dict  # epochs, threshold, temperature
    studies: dict  # stream set -> RecipeStudy
    cv_folds: int
    seeds: list

    def verdict(self) -> str:
        """The outcome in plain words, saying when the winner is not significantly better."""
        row = self.ranking.iloc[0]
        text = (
            f"{self.winner.name} is carried forward: cross-validated accuracy {row['accuracy']:.1%} "
            f"(± {100 * row['accuracy std']:.1f} pp over seeds)."
        )
        for _, comp in self.comparisons.iterrows():
            low, high = comp["low"], comp["high"]
            text += (
                f" Against {comp['against']} ({comp['role']}): {100 * comp['difference']:+.1f} pp "
                f"[95% CI {100 * low:+.1f}, {100 * high:+.1f} pp], "
                + (
                    "a significant difference."
                    if ci_excludes_zero(low, high)
                    else "not significantly better: the data cannot tell them apart."
                )
            )
        return text

    def to_json(self) -> dict:
        return {
            "cv_folds": self.cv_folds,
            "seeds": self.seeds,
            "rank_metric": RANK_METRIC,
            "winner": {"name": self.winner.name, "recipe": self.winner.recipe, "streams": self.winner.streams},
            "ranking": self.ranking.to_dict("records"),
            "comparisons": self.comparisons.to_dict("records"),
            "choices": self.choices,
            "verdict": self.verdict(),
        }


def _oof(study: RecipeStudy, recipe: str) -> pd.DataFrame:
    """Per clip: label, group and the held-out probability averaged over seeds."""
    rows = study.predictions[study.predictions["config"] == recipe]
    return rows.groupby("clip_id", sort=False).agg(y=("y", "first"), prob=("prob", "mean"), group=("group", "first"))


def _ranking(candidates: list[Candidate], studies: Mapping[str, RecipeStudy]) -> pd.DataFrame:
    rows = []
    for cand in candidates:
        numbers = studies[cand.streams].summary_numbers()[cand.recipe]
        rows.append(
            {
                "candidate": cand.name,
                "recipe": cand.recipe,
                "streams": cand.streams,
                "accuracy": numbers["accuracy"]["mean"],
                "accuracy std": numbers["accuracy"]["std"],
                "balanced accuracy": numbers["balanced_accuracy"]["mean"],
                "class gap": numbers["class_gap"]["mean"],
                "AUC": numbers["roc_auc"]["mean"],
            }
        )
    table = pd.DataFrame(rows).sort_values([RANK_METRIC, "class gap"], ascending=[False, True], kind="stable")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True)


def _compare(winner: pd.DataFrame, other: pd.DataFrame, n_bootstrap: int, seed: int) -> tuple[float, float, float]:
    both = winner.join(other[["prob"]], rsuffix="_other", how="inner")
    return group_bootstrap_diff(
        both["y"].to_numpy(),
        both["prob_other"].to_numpy(),
        both["prob"].to_numpy(),
        both["group"].to_numpy(),
        metric_function(RANK_METRIC),
        n=n_bootstrap,
        seed=seed,
    )


def choose_from_oof(oof: pd.DataFrame, runs: pd.DataFrame) -> dict:
    """Epochs (median best epoch of the winner's units), threshold (best balanced accuracy) and
    temperature, all from out-of-fold predictions on train + val."""
    preds = Predictions("val", oof["y"].to_numpy().astype(np.int64), oof["prob"].to_numpy(), tuple(oof.index))
    return {
        "epochs": int(np.median(runs["best_epoch"])),
        "threshold": float(choose_threshold(preds)),
        "temperature": float(fit_temperature(preds)),
        "chosen_on": "out-of-fold predictions on train + val",
        "oof_clips": int(len(oof)),
    }


def select_recipe(
    pools: Mapping[str, Pool],
    candidates: list[Candidate],
    seeds,
    cv_folds: int,
    out_dir: str | Path,
    fold_seed: int = 0,
    n_bootstrap: int = 1000,
    progress: bool = True,
    execution: StudyExecution | None = None,
) -> Selection:
    """Cross-validate every candidate, rank them and pick the winner (writes ``selection.json``).

    Args:
        pools: stream set name -> its development pool (train + val clips, never test).
        candidates: from ``selection_candidates``.
        seeds: training seeds; every candidate runs with each.
        cv_folds: k >= 2 grouped folds.
        out_dir: one sub-folder per stream set (the studies' units, reused on a rerun).
        execution: where the units train (``study_units.StudyExecution``; default: in this process). The
            units of every stream set's study are handed out together, so workers stay busy.
    """
    if cv_folds < 2:
        raise ValueError(f"select_recipe: cv needs cv_folds >= 2 (grouped k-fold on train + val), got {cv_folds}")
    out_dir = Path(out_dir)
    stream_sets = list(dict.fromkeys(c.streams for c in candidates))
    plans = [
        plan_study(
            pools[streams],
            {c.recipe: c.config for c in candidates if c.streams == streams},
            seeds,
            cv_folds,
            out_dir / streams.replace(":", "-"),
            fold_seed=fold_seed,
            tag=streams,
        )
        for streams in stream_sets
    ]
    studies = dict(zip(stream_sets, run_studies(plans, execution, progress), strict=True))
    ranking = _ranking(candidates, studies)
    by_name = {c.name: c for c in candidates}
    winner = by_name[ranking.iloc[0]["candidate"]]
    oof = _oof(studies[winner.streams], winner.recipe)
    comparisons = []
    if len(ranking) > 1:
        comparisons.append(("runner-up", by_name[ranking.iloc[1]["candidate"]]))
    floor = [c for c in candidates if c.recipe == LINEAR_FLOOR and c.name != winner.name]
    ranked = list(ranking["candidate"])  # best first
    floor.sort(key=lambda c: ranked.index(c.name))
    if floor and floor[0].name not in [c.name for _, c in comparisons]:
        comparisons.append(("linear-probe floor", floor[0]))
    rows = []
    for role, other in comparisons:
        diff, low, high = _compare(oof, _oof(studies[other.streams], other.recipe), n_bootstrap, fold_seed)
        rows.append({"against": other.name, "role": role, "difference": diff, "low": low, "high": high})
    winner_runs = studies[winner.streams].runs
    choices = choose_from_oof(oof, winner_runs[winner_runs["config"] == winner.recipe])
    selection = Selection(
        ranking,
        winner,
        pd.DataFrame(rows, columns=["against", "role", "difference", "low", "high"]),
        oof,
        choices,
        studies,
        cv_folds,
        [int(s) for s in seeds],
    )
    write_json_atomic(out_dir / "selection.json", selection.to_json())
    return selection
