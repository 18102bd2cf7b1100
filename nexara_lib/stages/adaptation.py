"""Notebook 08 glue: what a camera never seen in training gains from calibration on its normal footage and from
a few reviewed clips, measured by grouped cross-validation over cameras on train + val (never test).

The model measured is the run's carried-forward recipe when it is the pooled linear probe (with the strength C
its out-of-fold predictions chose); otherwise a pooled linear probe on the carried model's streams stands in for
it (a probe refits in milliseconds per fold, a sequence model would not), with C chosen by grouped CV.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from IPython.display import Markdown
from matplotlib.figure import Figure

from nexara_lib.config import stage_config
from nexara_lib.evaluation import adaptation_report as report
from nexara_lib.evaluation.adaptation import significance_words
from nexara_lib.evaluation.adaptation_figures import camera_threshold_figure, learning_curve_figure
from nexara_lib.io import to_jsonable, write_json_atomic
from nexara_lib.layout import RunLayout, save_figure
from nexara_lib.stages.data import RunRecipe, load_manifest, run_recipe
from nexara_lib.stages.formats import stream_set_words
from nexara_lib.stages.headline import record_headline, record_summary
from nexara_lib.training.adaptation import AdaptationPlan, choose_strength, pooled_statistics, simulate_adaptation
from nexara_lib.training.study import development_pool

SECTION = "08_field_adaptation"
PROBE = "pooled_linear"


@dataclasses.dataclass
class Adaptation:
    """The simulation's scored rows and what was measured on them."""

    recipe: RunRecipe
    plan: AdaptationPlan
    strength_from: str
    rows: pd.DataFrame
    clips: int
    cameras: int
    n_bootstrap: int
    seed: int
    comparison: pd.DataFrame | None = None
    per_camera: pd.DataFrame | None = None
    curve: pd.DataFrame | None = None

    @property
    def stands_in(self) -> bool:
        """True when the carried model is not the pooled linear probe (a probe on its streams is measured)."""
        return self.recipe.params["model"] != PROBE


def _carried_strength(recipe: RunRecipe) -> float | None:
    """C of the carried pooled linear probe: its out-of-fold choice (03's selection), else None."""
    if recipe.params["model"] != PROBE or recipe.selection is None:
        return None
    grid = sorted(float(c) for c in recipe.params["pooled_c_grid"])
    return grid[min(max(int(recipe.selection["choices"]["epochs"]), 1), len(grid)) - 1]


def simulate(params: Mapping, layout: RunLayout) -> Adaptation:
    """Load the carried recipe's streams for train + val (never test), pool them and run the simulation."""
    cfg = stage_config(params, "adaptation")
    recipe = run_recipe(params, layout)
    pool = development_pool(load_manifest(layout), recipe.streams, layout.features)
    pooled = pooled_statistics(pool.x)
    weighting = {"focal_alpha": recipe.params["focal_alpha"], "class_weights": recipe.params["class_weights"]}
    strength = _carried_strength(recipe)
    strength_from = "the carried model's (chosen out of fold in 03)"
    if strength is None:
        grid = recipe.params["pooled_c_grid"]
        strength = choose_strength(pooled, pool.y, pool.groups, grid, cfg.adapt_cv_folds, params["seed"], **weighting)
        strength_from = "chosen by grouped CV over cameras on train + val"
    plan = AdaptationPlan(
        ks=tuple(sorted(set(cfg.adapt_k))),
        draws=cfg.adapt_draws,
        fold_seeds=tuple(cfg.adapt_fold_seeds),
        cv_folds=cfg.adapt_cv_folds,
        strength=float(strength),
        review_weight=cfg.adapt_review_weight,
        kappa_grid=tuple(cfg.adapt_threshold_shrinkage),
        calibration_negatives=cfg.adapt_calibration_negatives,
        center_shrinkage=cfg.adapt_center_shrinkage or None,
        false_alarm_rate=params["detect_false_alarm_rate"],
        seed=params["seed"],
        **weighting,
    )
    rows = simulate_adaptation(pooled, pool.y, pool.groups, pool.clip_ids, plan)
    return Adaptation(
        recipe, plan, strength_from, rows, len(pool.y), int(len(np.unique(pool.groups))),
        params["bootstrap_samples"], params["seed"],
    )  # fmt: skip


def setup_table(adaptation: Adaptation) -> pd.Series:
    """What was measured, on what, and how."""
    plan, recipe = adaptation.plan, adaptation.recipe
    model = (
        f"a pooled linear probe on the carried model's streams (the carried model is a {recipe.params['model']}, "
        "which would take too long to refit for every fold)"
        if adaptation.stands_in
        else "the carried model: the pooled linear probe"
    )
    adapted = ["per-camera threshold set on the camera's other normal clips"]
    if plan.review_weight != 1.0:
        adapted.append(f"reviewed clips weighted {plan.review_weight:g}x")
    if plan.center_shrinkage is not None:
        adapted.append("features centered on the camera's normal footage")
    if plan.calibration_negatives:
        adapted.append("the camera's normal clips as extra training negatives")
    return pd.Series(
        {
            "model measured": model,
            "streams": stream_set_words(recipe.streams.name),
            "strength C": f"{plan.strength:g}, {adaptation.strength_from}",
            "clips (train + val, never test)": adaptation.clips,
            "cameras (source groups)": adaptation.cameras,
            "grouped folds over cameras": f"{plan.cv_folds} per fold seed, fold seeds {list(plan.fold_seeds)}",
            "reviewed clips per camera (k)": f"{list(plan.ks)}, {plan.draws} seeded draws each",
            "target false-alarm rate": f"{plan.false_alarm_rate:.0%} of normal clips",
            "adapted design": "; ".join(adapted),
        },
        name="the measurement",
    )


def threshold_view(adaptation: Adaptation, layout: RunLayout) -> tuple[pd.DataFrame, Figure]:
    """(a) Global against per-camera threshold, k = 0: the table and the figure (saved as ``camera_thresholds``)."""
    adaptation.comparison = report.threshold_comparison(adaptation.rows, adaptation.n_bootstrap, adaptation.seed)
    adaptation.per_camera = report.per_camera_thresholds(adaptation.rows)
    figure = camera_threshold_figure(adaptation.per_camera, adaptation.comparison)
    save_figure(figure, layout, "camera_thresholds")
    return adaptation.comparison, figure


def learning_curve_view(adaptation: Adaptation, layout: RunLayout) -> tuple[pd.DataFrame, Figure]:
    """(b) The learning curve: one row per design and k (CIs over cameras, spread over fold seeds, gain over
    k = 0 on the same clips), and its figure (saved as ``adaptation_curve``)."""
    adaptation.curve = report.learning_curve(adaptation.rows, adaptation.n_bootstrap, adaptation.seed)
    figure = learning_curve_figure(adaptation.curve, adaptation.plan.false_alarm_rate)
    save_figure(figure, layout, "adaptation_curve")
    shown = adaptation.curve.assign(design=adaptation.curve["design"].map(report.DESIGN_WORDS))
    keep = [c for c in shown.columns if not c.endswith("_seed_std") and not c.startswith("gain_auc")]
    shown = shown[keep].rename(columns=lambda c: c.replace("gain_", "gain over k = 0, "))
    shown["reviewed clips per camera"] = [f"{v:.1f} on average" for v in shown["reviewed clips per camera"]]
    spread = adaptation.curve[["accuracy_seed_std", "auc_seed_std", "recall_seed_std"]]
    shown["spread over fold seeds (accuracy / AUC / recall)"] = [
        f"± {a:.1%} / ± {b:.1%} / ± {c:.1%}" for a, b, c in spread.to_numpy()
    ]
    return shown.set_index(["design", "k"]), figure


def _pct(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.0%}"


def _ci(value: float, low: float, high: float) -> str:
    return f"{value:.1%} (95% CI {low:.1%} to {high:.1%})"


def describe_adaptation(adaptation: Adaptation) -> tuple[str, str]:
    """(result, verdict) in plain words for the stakeholder report."""
    comparison, curve = adaptation.comparison, adaptation.curve
    if comparison is None or curve is None:
        raise ValueError("run threshold_view and learning_curve_view before describing the measurement")
    rate = adaptation.plan.false_alarm_rate
    glob, cam, diff = (comparison.loc[r] for r in comparison.index)
    needed = report.reviewed_needed(curve)
    k0 = curve[(curve["design"] == "plain") & (curve["k"] == 0)].iloc[0]
    stand_in = " (a pooled linear probe on the carried model's streams)" if adaptation.stands_in else ""
    result = (
        f"On {adaptation.cameras} cameras held out in turn{stand_in}, the detector caught "
        f"{_ci(glob['recall'], glob['recall_ci_low'], glob['recall_ci_high'])} of fights at the global on-threshold "
        f"({glob['false_alarm_rate']:.1%} of normal clips alarmed), and "
        f"{_ci(cam['recall'], cam['recall_ci_low'], cam['recall_ci_high'])} with a threshold set on each camera's own "
        f"normal clips ({cam['false_alarm_rate']:.1%} alarmed). Accuracy with no reviewed clip: "
        f"{_ci(k0['accuracy'], k0['accuracy_ci_low'], k0['accuracy_ci_high'])}."
    )
    calibration = (
        f"Calibrating each camera on its own normal footage changed fight recall by {diff['recall'] * 100:+.1f} "
        f"percentage points (95% CI {diff['recall_ci_low'] * 100:+.1f} to {diff['recall_ci_high'] * 100:+.1f}: "
        f"{significance_words(diff['recall_ci_low'], diff['recall_ci_high'])}) and the share of normal clips that "
        f"alarm by {diff['false_alarm_rate'] * 100:+.1f} points."
    )
    row = curve[(curve["design"] == "adapted") & (curve["k"] == needed["k"])].iloc[0]
    alarms = needed["false_alarm_rate"] * 100
    at = f"{_pct(needed['recall'])} fight recall at about {alarms:.0f} false alarms per 100 normal clips"
    if needed["k"] == 0:
        reviews = f"Reviewed clips did not raise fight recall beyond calibration alone ({at}) at these sample sizes."
    elif needed["gain_significant"]:
        reviews = (
            f"A new camera needs about {needed['k']} reviewed alerts, with calibration, to reach {at} "
            f"(accuracy {needed['accuracy']:.1%}); the gain over no reviewed clip is significant "
            f"({row['gain_recall'] * 100:+.1f} points, 95% CI {row['gain_recall_ci_low'] * 100:+.1f} to "
            f"{row['gain_recall_ci_high'] * 100:+.1f})."
        )
    else:
        reviews = (
            f"With {needed['k']} reviewed alerts per camera and calibration the detector reached {at} "
            f"(accuracy {needed['accuracy']:.1%}), but that gain over calibration alone is not significant on "
            f"{adaptation.cameras} cameras ({row['gain_recall'] * 100:+.1f} points, 95% CI "
            f"{row['gain_recall_ci_low'] * 100:+.1f} to {row['gain_recall_ci_high'] * 100:+.1f}): these data cannot "
            "yet say how many reviewed alerts a new camera needs beyond calibration."
        )
    verdict = (
        f"{calibration} {reviews} Measured on train + val by grouped cross-validation over cameras, never on test "
        f"(target: {rate:.0%} of normal clips alarmed)."
    )
    return result, verdict


def summary_text(adaptation: Adaptation) -> Markdown:
    result, verdict = describe_adaptation(adaptation)
    return Markdown(f"**Result.** {result}\n\n**What it means.** {verdict}")


def publish(adaptation: Adaptation, layout: RunLayout):
    """Write ``artifacts/adaptation.json`` (and the scored rows as CSV), the headline figures and the summary."""
    if adaptation.comparison is None or adaptation.curve is None:
        raise ValueError("run threshold_view and learning_curve_view before publishing")
    result, verdict = describe_adaptation(adaptation)
    plan = dataclasses.asdict(adaptation.plan)
    plan["kappa_grid"] = [k if math.isfinite(k) else "inf" for k in plan["kappa_grid"]]
    adaptation.rows.to_csv(layout.artifacts / "adaptation_rows.csv", index=False)
    write_json_atomic(
        layout.artifacts / "adaptation.json",
        to_jsonable(
            {
                "model": adaptation.recipe.params["model"],
                "probe_stands_in": adaptation.stands_in,
                "streams": adaptation.recipe.streams.name,
                "strength_from": adaptation.strength_from,
                "plan": plan,
                "clips": adaptation.clips,
                "cameras": adaptation.cameras,
                "thresholds": adaptation.comparison.reset_index().to_dict("records"),
                "threshold_counts": dict(adaptation.comparison.attrs),
                "learning_curve": adaptation.curve.to_dict("records"),
                "folds": adaptation.rows.attrs.get("folds", []),
                "reviewed_needed": report.reviewed_needed(adaptation.curve),
                "summary": {"result": result, "verdict": verdict},
            }
        ),
    )
    record_summary(layout.run_dir, SECTION, result, verdict)
    glob, cam = (adaptation.comparison.loc[r] for r in ("global threshold", "per-camera threshold"))
    figures = {
        "fight recall, global threshold": {
            "value": glob["recall"],
            "ci": [glob["recall_ci_low"], glob["recall_ci_high"]],
        },
        "fight recall, per-camera threshold": {
            "value": cam["recall"],
            "ci": [cam["recall_ci_low"], cam["recall_ci_high"]],
        },
    }
    for _, row in adaptation.curve[adaptation.curve["design"] == "adapted"].iterrows():
        figures[f"accuracy with {int(row['k'])} reviewed clips"] = {
            "value": row["accuracy"],
            "ci": [row["accuracy_ci_low"], row["accuracy_ci_high"]],
        }
    return record_headline(layout.run_dir, SECTION, figures)
