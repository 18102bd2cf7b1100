"""What a recipe study found: every unit's held-out metrics and predictions, and the tables, paired
comparisons (a bootstrap over source groups) and plot made from them.

``study.run_recipe_study`` fills a ``RecipeStudy``; notebook 03 shows it and ``selection`` ranks from it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nexara_lib.evaluation.metrics import metric_function

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
    samples: list[float] = []
    for _ in range(n):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        if len(np.unique(y[idx])) < 2:
            continue  # a resample with one class says nothing about per-class metrics
        samples.append(metric_fn(y[idx], prob_b[idx]) - metric_fn(y[idx], prob_a[idx]))
    diffs = np.asarray(samples, dtype=float)
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
            row: dict[str, str | int] = {}
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
        for ax, metric in zip(axes, STUDY_METRICS, strict=True):
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
