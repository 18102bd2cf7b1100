"""Ablations: several training recipes on the same features, seeds and folds, side by side.

The run's own recipe is always the baseline ``default``; each file of ``ablation_configs``
changes some training keys of it (``params/ablation_overregularized.yaml`` is the seed
team's failed configuration). Every (configuration, seed, fold) unit trains with
``train_sequence_model`` on the fold's ``fit`` clips, early-stops on its inner validation
and is scored once on the fold's held-out clips (``cross_validation``). The test split is
never used here.

Units are resumable: a finished unit is stored as ``unit.json`` (metrics and held-out
predictions, no model) and skipped on a rerun with the same configuration and data; an
interrupted unit continues from its training checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nexara_lib.config import load_yaml, stage_keys
from nexara_lib.evaluation.metrics import binary_metrics, metric_function
from nexara_lib.io import read_json, to_jsonable, write_json_atomic
from nexara_lib.training.folds import Fold, grouped_folds, holdout_fold
from nexara_lib.training.train import NOT_FINGERPRINTED, predict_proba, train_sequence_model

BASELINE = "default"
# what the study table and plot show (binary_metrics names at threshold 0.5)
STUDY_METRICS = ("accuracy", "acc_violent", "acc_nonviolent", "class_gap", "roc_auc")
METRIC_LABELS = {
    "accuracy": "accuracy",
    "acc_violent": "violent acc.",
    "acc_nonviolent": "non-violent acc.",
    "class_gap": "class gap",
    "roc_auc": "AUC",
    "balanced_accuracy": "balanced acc.",
}
_TRAINING_KEYS = stage_keys("training")


def load_ablation_config(path: str | Path) -> tuple[str, dict]:
    """(name, overrides) of one ablation file: its stem minus 'ablation_', and its training keys.

    An ablation compares recipes on the same features, so a key of another stage (backbone,
    frames_per_clip, data_dir, ...) is an error, as is an empty file.
    """
    path = Path(path)
    overrides = load_yaml(path)
    other = sorted(k for k in overrides if k not in _TRAINING_KEYS)
    if other:
        raise ValueError(
            f"ablation file {str(path)!r} sets {other}, which are not training keys; an ablation "
            "trains on the run's features, so it may only change training keys (model, dropout, ...)"
        )
    if not overrides:
        raise ValueError(f"ablation file {str(path)!r} changes nothing; give it at least one training key")
    name = path.stem.removeprefix("ablation_")
    if name == BASELINE:
        raise ValueError(
            f"ablation file {str(path)!r} would be named {BASELINE!r}, the name of the run's own "
            "recipe; rename the file"
        )
    return name, overrides


def study_configs(params: Mapping[str, Any]) -> dict[str, dict]:
    """{name: full parameter mapping}: the run's recipe as 'default', then each ablation file's variant."""
    configs = {BASELINE: dict(params)}
    for path in params.get("ablation_configs") or []:
        name, overrides = load_ablation_config(path)
        if name in configs:
            raise ValueError(f"two ablation files are named {name!r}; ablation names must be unique")
        configs[name] = {**params, **overrides}
    return configs


def changed_keys(configs: Mapping[str, Mapping]) -> pd.DataFrame:
    """The training keys each configuration changes relative to 'default' (one row per key)."""
    base = configs[BASELINE] if BASELINE in configs else next(iter(configs.values()))
    changed = [k for k in _TRAINING_KEYS if any(cfg.get(k) != base.get(k) for cfg in configs.values())]
    rows = {
        key: {
            name: str(cfg.get(key)) if name == BASELINE or cfg.get(key) != base.get(key) else ""
            for name, cfg in configs.items()
        }
        for key in changed
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(configs))


@dataclasses.dataclass
class Pool:
    """The development pool: train + val clips of the manifest with their features."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    clip_ids: list
    is_train: np.ndarray

    def fingerprint(self) -> str:
        digest = hashlib.sha1(np.ascontiguousarray(self.x).tobytes())
        digest.update(self.y.tobytes())
        digest.update("\n".join(map(str, self.clip_ids)).encode())
        digest.update("\n".join(self.groups).encode())
        return digest.hexdigest()


def development_pool(manifest: pd.DataFrame, streams, cache_root: str | Path) -> Pool:
    """Features of the train and val clips (never test), with their source groups.

    Args:
        manifest: the run's usable clips.
        streams: what to load: a ``FeatureStream`` or a ``StreamSet`` (anything with ``load(rows, cache_root)``).
        cache_root: the feature cache folder.
    """
    rows = manifest[manifest["split"].isin(["train", "val"])]
    if rows.empty:
        raise ValueError("the manifest has no train or val clips to cross-validate on; re-run the audit")
    x, y, ids = streams.load(rows, cache_root)
    by_id = rows.set_index(rows["clip_id"].astype(str))
    groups = by_id.loc[ids, "group"].astype(str).to_numpy()
    is_train = (by_id.loc[ids, "split"] == "train").to_numpy()
    return Pool(x, y, groups, ids, is_train)


def plan_folds(pool: Pool, cv_folds: int, seed: int) -> list[Fold]:
    """k grouped folds when cv_folds >= 2, else the fixed split as one holdout fold."""
    if cv_folds >= 2:
        return grouped_folds(pool.y, pool.groups, cv_folds, seed=seed)
    return [holdout_fold(pool.y, pool.groups, pool.is_train, seed=seed)]


def _unit_fingerprint(cfg: Mapping, seed: int, fold: Fold, pool_fingerprint: str) -> str:
    training = {k: cfg[k] for k in _TRAINING_KEYS if k not in NOT_FINGERPRINTED}
    payload = json.dumps(
        to_jsonable(
            {
                "training": training,
                "seed": seed,
                "fit": fold.fit,
                "inner": fold.inner_val,
                "evaluate": fold.evaluate,
                "pool": pool_fingerprint,
            }
        ),
        sort_keys=True,
    )
    return hashlib.sha1(payload.encode()).hexdigest()


def _train_unit(pool: Pool, fold: Fold, cfg: Mapping, seed: int, unit_dir: Path, fingerprint: str) -> dict:
    quiet = logging.getLogger("nexara.training")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)  # dozens of units: their per-epoch gap warnings would bury the report
    try:
        result = train_sequence_model(
            pool.x[fold.fit],
            pool.y[fold.fit],
            pool.x[fold.inner_val],
            pool.y[fold.inner_val],
            cfg,
            unit_dir,
            seed=seed,
            verbose=0,
        )
    finally:
        quiet.setLevel(level)
    prob = predict_proba(result["model"], pool.x[fold.evaluate])
    (unit_dir / "model.keras").unlink(missing_ok=True)  # units keep metrics and predictions, not 30 models
    return {
        "fingerprint": fingerprint,
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "stop_reason": result["stop_reason"],
        "seconds": result["timings"]["total_seconds"],
        "seconds_per_epoch": result["timings"]["seconds_per_epoch"],
        "clip_ids": [pool.clip_ids[i] for i in fold.evaluate],
        "y": pool.y[fold.evaluate].tolist(),
        "prob": prob.tolist(),
    }


def group_bootstrap_diff(
    y, prob_a, prob_b, groups, metric_fn, n: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(metric(b) - metric(a), low, high): a paired bootstrap that resamples whole groups.

    Args:
        y: labels (N,).
        prob_a, prob_b: the two systems' probabilities on the same clips.
        groups: source group of each clip; resampled with replacement, all clips of a drawn group
            come along.
        metric_fn: ``fn(y, prob) -> float`` (``evaluation.metric_function``).
        n, seed, alpha: resamples, their seed, 1 - confidence.
    """
    y, prob_a, prob_b, groups = (np.asarray(v) for v in (y, prob_a, prob_b, groups))
    if not len(y) == len(prob_a) == len(prob_b) == len(groups) or len(y) == 0:
        raise ValueError("y, both probability arrays and groups must have the same non-zero length")
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    rng = np.random.default_rng(seed)
    point = float(metric_fn(y, prob_b) - metric_fn(y, prob_a))
    diffs = []
    for _ in range(n):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        if len(np.unique(y[idx])) < 2:
            continue  # a resample with one class says nothing about per-class metrics
        diffs.append(metric_fn(y[idx], prob_b[idx]) - metric_fn(y[idx], prob_a[idx]))
    diffs = np.asarray(diffs, dtype=float)
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return point, float("nan"), float("nan")
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return point, float(low), float(high)


@dataclasses.dataclass
class RecipeStudy:
    """Every unit's held-out metrics and predictions, and the tables and plot made from them.

    Attributes:
        runs: one row per (config, seed, fold): STUDY_METRICS, balanced_accuracy, best_epoch, ...
        predictions: one row per (config, seed, clip): y and prob on the clip's held-out fold.
        configs: name -> the training keys it changes (for the notebook's table).
        folds: the fold plan, described.
        seeds: the seeds every configuration ran with.
    """

    runs: pd.DataFrame
    predictions: pd.DataFrame
    configs: pd.DataFrame
    folds: pd.DataFrame
    seeds: list
    cv_folds: int

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(self.runs["config"]))

    def seed_means(self) -> pd.DataFrame:
        """Per (config, seed): the metrics averaged over folds."""
        metrics = list(STUDY_METRICS) + ["balanced_accuracy"]
        return self.runs.groupby(["config", "seed"], sort=False)[metrics].mean().reset_index()

    def summary(self) -> pd.DataFrame:
        """Per configuration: mean and std over seeds of the fold-averaged metrics, formatted."""
        per_seed = self.seed_means()
        rows = {}
        for name in self.names:
            values = per_seed[per_seed["config"] == name]
            row = {}
            for metric in STUDY_METRICS:
                mean = values[metric].mean()
                std = values[metric].std(ddof=1) if len(values) > 1 else float("nan")
                row[METRIC_LABELS[metric]] = f"{mean:.3f} ± {std:.3f}" if np.isfinite(std) else f"{mean:.3f}"
            fold_std = self.runs[self.runs["config"] == name].groupby("seed")["accuracy"].std(ddof=1).mean()
            row["accuracy std over folds"] = f"{fold_std:.3f}" if np.isfinite(fold_std) else "n/a"
            row["best epoch (median)"] = int(self.runs.loc[self.runs["config"] == name, "best_epoch"].median())
            rows[name] = row
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = f"mean ± std over {len(self.seeds)} seeds"
        return table

    def summary_numbers(self) -> dict:
        """{config: {metric: {"mean", "std"}}} over seeds (for JSON and headlines)."""
        per_seed = self.seed_means()
        out = {}
        for name in self.names:
            values = per_seed[per_seed["config"] == name]
            out[name] = {
                m: {
                    "mean": float(values[m].mean()),
                    "std": float(values[m].std(ddof=1)) if len(values) > 1 else float("nan"),
                }
                for m in list(STUDY_METRICS) + ["balanced_accuracy"]
            }
        return out

    def per_fold(self, metric: str = "accuracy") -> pd.DataFrame:
        """``metric`` per configuration (rows) and fold (columns), mean over seeds."""
        table = self.runs.pivot_table(index="config", columns="fold", values=metric, aggfunc="mean", sort=False)
        return table.reindex(self.names).round(3)

    def comparison(self, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
        """Each configuration minus 'default' on the pooled held-out predictions (probabilities averaged
        over seeds), with paired 95% CIs from a bootstrap over source groups.

        Clips of one recording are not independent, so whole groups are resampled (with one clip
        per group this is the ordinary clip bootstrap)."""
        differences = self.paired_differences(("accuracy", "balanced_accuracy", "acc_violent"), n_bootstrap, seed)
        rows = {
            f"{name} − {BASELINE}": {
                f"Δ {METRIC_LABELS.get(metric, metric)}": f"{d:+.1%} [{lo:+.1%}, {hi:+.1%}]"
                for metric, (d, lo, hi) in metrics.items()
            }
            for name, metrics in differences.items()
        }
        table = pd.DataFrame.from_dict(rows, orient="index")
        if not table.empty:
            base = self.predictions[self.predictions["config"] == BASELINE]
            table.index.name = (
                f"paired 95% CI, bootstrap over {base['group'].nunique()} source groups "
                f"({base['clip_id'].nunique()} held-out clips)"
            )
        return table

    def paired_differences(self, metrics=("accuracy",), n_bootstrap: int = 1000, seed: int = 0) -> dict:
        """{config: {metric: (difference, ci_low, ci_high)}}: each configuration minus 'default' (fractions)."""
        pooled = self.predictions.groupby(["config", "clip_id"], sort=False).agg(
            y=("y", "first"), prob=("prob", "mean"), group=("group", "first")
        )
        if BASELINE not in self.names:
            return {}
        base = pooled.loc[BASELINE]
        y, groups = base["y"].to_numpy(), base["group"].to_numpy()
        out = {}
        for name in self.names:
            if name == BASELINE:
                continue
            other = pooled.loc[name].reindex(base.index)
            out[name] = {
                metric: tuple(
                    float(v)
                    for v in group_bootstrap_diff(
                        y,
                        base["prob"].to_numpy(),
                        other["prob"].to_numpy(),
                        groups,
                        metric_function(metric),
                        n=n_bootstrap,
                        seed=seed,
                    )
                )
                for metric in metrics
            }
        return out

    def figure(self) -> Figure:
        """One panel per metric: each seed's fold-averaged value (dots) and mean ± std over seeds."""
        per_seed = self.seed_means()
        fig = Figure(figsize=(3.2 * len(STUDY_METRICS), 3.8), layout="constrained")
        axes = fig.subplots(1, len(STUDY_METRICS), sharey=False)
        positions = np.arange(len(self.names))
        for ax, metric in zip(axes, STUDY_METRICS):
            for i, name in enumerate(self.names):
                values = per_seed.loc[per_seed["config"] == name, metric].to_numpy()
                jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
                ax.scatter(i + jitter, values, s=18, color="grey", alpha=0.7, zorder=2)
                std = values.std(ddof=1) if len(values) > 1 else 0.0
                ax.errorbar(i, values.mean(), yerr=std, fmt="o", color=f"C{i}", capsize=5, markersize=8, zorder=3)
            ax.set_xticks(positions, self.names, rotation=20, ha="right")
            ax.set_title(METRIC_LABELS[metric])
            ax.set_ylim(0, 1.02)
            ax.grid(axis="y", alpha=0.3)
        where = f"grouped {self.cv_folds}-fold CV" if self.cv_folds >= 2 else "fixed split, scored on val"
        fig.suptitle(f"Recipes compared: {where}, mean ± std over seeds {self.seeds} (grey: one seed)")
        return fig

    def headline(self) -> dict:
        """Headline figures: the held-out accuracy of the run's recipe and of each alternative (mean over seeds)."""
        numbers = self.summary_numbers()
        where = "cross-validated" if self.cv_folds >= 2 else "validation"
        return {
            f"recipe comparison: {where} accuracy, {'our recipe' if name == BASELINE else name}": {
                "value": numbers[name]["accuracy"]["mean"],
                "format": "percent",
            }
            for name in self.names
        }


def run_recipe_study(
    pool: Pool,
    configs: Mapping[str, Mapping],
    seeds,
    cv_folds: int,
    out_dir: str | Path,
    fold_seed: int = 0,
    progress: bool = True,
) -> RecipeStudy:
    """Train every (configuration, seed, fold) unit (or reuse it) and collect held-out metrics.

    Args:
        pool: the development pool (``development_pool``).
        configs: name -> parameter mapping (``study_configs``); must include 'default'.
        seeds: training seeds; each configuration runs with every one.
        cv_folds: k >= 2 for grouped k-fold CV, 0 for the fixed split (scored on val).
        out_dir: one folder per unit: ``<config>/seed<s>/<fold>/``; also ``study.json``.
        fold_seed: seeds the fold assignment (the same folds for every configuration and seed).
        progress: print a line per unit.

    Returns:
        A ``RecipeStudy``; ``study.json`` holds its runs and summary.
    """
    if not configs:
        raise ValueError("run_recipe_study needs at least one configuration (normally 'default', the run's recipe)")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("run_recipe_study needs at least one seed")
    out_dir = Path(out_dir)
    folds = plan_folds(pool, cv_folds, fold_seed)
    pool_fingerprint = pool.fingerprint()
    units = [(name, seed, fold) for name in configs for seed in seeds for fold in folds]
    group_of = dict(zip(pool.clip_ids, pool.groups))
    runs, predictions = [], []
    started = time.perf_counter()
    for number, (name, seed, fold) in enumerate(units, start=1):
        cfg = configs[name]
        unit_dir = out_dir / name / f"seed{seed}" / fold.name
        fingerprint = _unit_fingerprint(cfg, seed, fold, pool_fingerprint)
        unit = read_json(unit_dir / "unit.json")
        reused = unit is not None and unit.get("fingerprint") == fingerprint
        if not reused:
            if unit is not None:  # stale: other parameters or data
                shutil.rmtree(unit_dir)
            unit = _train_unit(pool, fold, cfg, seed, unit_dir, fingerprint)
            write_json_atomic(unit_dir / "unit.json", unit)
        metrics = binary_metrics(np.asarray(unit["y"]), np.asarray(unit["prob"]), 0.5)
        runs.append(
            {
                "config": name,
                "seed": seed,
                "fold": fold.name,
                "n_evaluated": len(unit["y"]),
                **{m: metrics[m] for m in (*STUDY_METRICS, "balanced_accuracy")},
                **{k: unit[k] for k in ("best_epoch", "epochs_run", "stop_reason", "seconds")},
                "reused": reused,
            }
        )
        predictions.extend(
            {"config": name, "seed": seed, "fold": fold.name, "clip_id": c, "group": group_of[c], "y": y, "prob": p}
            for c, y, p in zip(unit["clip_ids"], unit["y"], unit["prob"])
        )
        if progress:
            took = "reused" if reused else f"{unit['seconds']:.0f} s"
            print(
                f"[{number}/{len(units)}] {name} seed {seed} {fold.name}: accuracy {metrics['accuracy']:.3f}, "
                f"violent {metrics['acc_violent']:.3f}, non-violent {metrics['acc_nonviolent']:.3f} ({took}); "
                f"{time.perf_counter() - started:.0f} s elapsed",
                flush=True,
            )
    study = RecipeStudy(
        pd.DataFrame(runs),
        pd.DataFrame(predictions),
        changed_keys(configs),
        pd.DataFrame([f.describe(pool.y) for f in folds]),
        seeds,
        cv_folds,
    )
    write_json_atomic(
        out_dir / "study.json",
        {
            "cv_folds": cv_folds,
            "seeds": seeds,
            "fold_seed": fold_seed,
            "configs": {n: {k: c[k] for k in _TRAINING_KEYS} for n, c in configs.items()},
            "summary": study.summary_numbers(),
            "runs": study.runs.to_dict(orient="records"),
        },
    )
    study.runs.to_csv(out_dir / "runs.csv", index=False)
    return study


def study_for_run(
    manifest: pd.DataFrame,
    streams,
    cache_root: str | Path,
    params: Mapping[str, Any],
    out_dir: str | Path,
    progress: bool = True,
) -> RecipeStudy | None:
    """The run's study (``cv_folds``, ``ablation_configs``, ``ablation_seeds``), or None when neither
    cross-validation nor an ablation is asked for."""
    if params["cv_folds"] < 2 and not params["ablation_configs"]:
        return None
    configs = study_configs(params)  # bad ablation files fail here, before any training
    pool = development_pool(manifest, streams, cache_root)
    return run_recipe_study(
        pool,
        configs,
        params["ablation_seeds"],
        params["cv_folds"],
        out_dir,
        fold_seed=params["seed"],
        progress=progress,
    )
