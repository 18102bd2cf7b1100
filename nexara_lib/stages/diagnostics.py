"""Notebook 04 glue: the run's model on validation and test, per class, with thresholds chosen on
validation, calibration, bootstrap CIs, per-source results and the hardest clips."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import keras
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nexara_lib.evaluation import diagnostics as dg
from nexara_lib.evaluation.figures import (
    attention_gallery_figure,
    confusion_matrix_figure,
    per_class_accuracy_figure,
    reliability_figure,
    roc_pr_figure,
    threshold_sweep_figure,
)
from nexara_lib.evaluation.predictions import Predictions
from nexara_lib.evaluation.stats import compare_paired
from nexara_lib.io import write_json_atomic
from nexara_lib.labels import CLASS_NAMES
from nexara_lib.layout import RunLayout, save_figure
from nexara_lib.stages.data import FeatureSplit, RunRecipe, load_manifest, load_splits, run_recipe
from nexara_lib.stages.headline import record_headline, record_summary
from nexara_lib.stages.widgets import threshold_slider
from nexara_lib.training.arrays import predict_arrays
from nexara_lib.training.layers import attention_model
from nexara_lib.training.model_files import load_sequence_model
from nexara_lib.training.train import predict_proba
from nexara_lib.video.frames import read_frames, sample_frame_indices


@dataclasses.dataclass
class Diagnosis:
    """The run's model, its validation and test predictions, and the metrics report built from them."""

    manifest: pd.DataFrame
    splits: dict[str, FeatureSplit]
    model: keras.Model
    preds: dict[str, Predictions]
    report: dict
    recipe: RunRecipe

    @property
    def thresholds(self) -> dict:
        """Operating thresholds chosen on validation."""
        return self.report["thresholds"]

    @property
    def operating_threshold(self) -> float:
        """The threshold with the best validation balanced accuracy: the one the run reports at."""
        return self.report["thresholds"]["balanced_accuracy"]


def load_run_model(recipe: RunRecipe, layout: RunLayout) -> keras.Model:
    """The model notebook 03 carried forward, loaded in Keras safe mode."""
    return load_sequence_model(layout.require(recipe.model_path, "03_hybrid_training"))


def diagnose(params: Mapping, layout: RunLayout) -> Diagnosis:
    """Predict validation and test with the model notebook 03 carried forward, choose thresholds on
    validation (on out-of-fold predictions when 03 selected the recipe by cross-validation), compute
    every metric with bootstrap CIs, and write ``artifacts/metrics.json``."""
    recipe = run_recipe(params, layout)
    manifest = load_manifest(layout)
    splits = load_splits(manifest, recipe.streams, layout, ("val", "test"))
    model = load_run_model(recipe, layout)
    preds = {name: Predictions(name, s.y, predict_proba(model, s.x), tuple(s.clip_ids)) for name, s in splits.items()}
    preds["val"] = recipe.validation(preds["val"])
    report = dg.metrics_report(
        preds["val"],
        preds["test"],
        max_fpr=params["max_false_positive_rate"],
        n_bootstrap=params["bootstrap_samples"],
        seed=params["seed"],
    )
    if recipe.selection is not None:
        report["chosen_on"] = "out-of-fold predictions on train + val (the 'val' metrics are out-of-fold)"
        report["selection"] = _selection_report(recipe.selection, splits["test"], preds["test"], report, params, layout)
    write_json_atomic(layout.metrics, report)
    return Diagnosis(manifest, splits, model, preds, report, recipe)


def _selection_report(
    selection: dict, test: FeatureSplit, test_preds: Predictions, report: dict, params: Mapping, layout: RunLayout
) -> dict:
    """The winner carried forward, and (reported, not chosen on) whether refitting it on train + val
    beat the same recipe trained on train with early stopping, on test at each one's threshold."""
    train_only = load_sequence_model(layout.run_dir / selection["carried"]["train_only_model_path"])
    threshold = report["thresholds"]["balanced_accuracy"]
    comparison = compare_paired(
        test.y,
        predict_proba(train_only, test.x),
        test_preds.prob,
        threshold=threshold,
        n_bootstrap=params["bootstrap_samples"],
        seed=params["seed"],
    )
    return {
        "winner": selection["winner"],
        "verdict": selection["verdict"],
        "choices": selection["choices"],
        "refit_vs_train_only_test": comparison,
    }


def selection_table(diagnosis: Diagnosis) -> pd.Series:
    """Which recipe is evaluated here and how it was chosen; with a selection, refit vs train-only on test."""
    selection = diagnosis.report.get("selection")
    if selection is None:
        return pd.Series(
            {
                "model": diagnosis.recipe.params["model"],
                "chosen by": "the run's parameters",
                "threshold chosen on": "the validation split",
            },
            name="evaluated recipe",
        )
    diff = selection["refit_vs_train_only_test"]["accuracy_diff_ci"]
    return pd.Series(
        {
            "model": selection["winner"]["name"],
            "chosen by": "grouped cross-validation on train + val",
            "threshold and temperature chosen on": "out-of-fold predictions",
            "refit on train + val vs train only, test accuracy": (
                f"{diff[0]:+.3f} [95% CI {diff[1]:+.3f}, {diff[2]:+.3f}]"
            ),
        },
        name="evaluated recipe",
    )


THRESHOLD_WORDS = {
    "default": "0.5 (no tuning)",
    "balanced_accuracy": "best balanced accuracy on validation",
    "max_fpr": "most violent clips caught with few false alarms on validation",
}
SPLIT_WORDS = {"val": "validation", "test": "test"}


def thresholds_table(diagnosis: Diagnosis) -> pd.DataFrame:
    """The operating thresholds, chosen on validation: a clip is called violent at or above its threshold."""
    return pd.DataFrame(
        {
            "threshold rule": [THRESHOLD_WORDS.get(k, k) for k in diagnosis.thresholds],
            "probability of violence at or above": [f"{v:.3f}" for v in diagnosis.thresholds.values()],
        }
    )


def per_class_table(diagnosis: Diagnosis, params: Mapping) -> pd.DataFrame:
    """Per-class metrics with 95% CIs for each split and threshold rule (rows named in words)."""
    table = dg.per_class_table(
        diagnosis.preds, diagnosis.thresholds, n_bootstrap=params["bootstrap_samples"], seed=params["seed"]
    )
    table.index = pd.Index(
        [
            f"{SPLIT_WORDS.get(split, split)}, threshold: {THRESHOLD_WORDS.get(name, name)}"
            for split, name in table.index
        ],
        name="clips and threshold rule",
    )
    return table


def confusion_figure(diagnosis: Diagnosis, layout: RunLayout) -> Figure:
    """The test confusion matrix at the operating threshold, saved as ``confusion_test``."""
    op, test = diagnosis.operating_threshold, diagnosis.preds["test"]
    fig = confusion_matrix_figure(test.y_true, test.pred(op), title=f"test, threshold {op:.2f}")
    save_figure(fig, layout, "confusion_test")
    return fig


def roc_pr(diagnosis: Diagnosis, layout: RunLayout) -> Figure:
    fig = roc_pr_figure(diagnosis.preds)
    save_figure(fig, layout, "roc_pr")
    return fig


def threshold_and_calibration(diagnosis: Diagnosis, layout: RunLayout) -> tuple:
    """The validation threshold sweep and the reliability diagram (both saved), the calibration
    table per split, and the temperature fit on validation."""
    sweep = threshold_sweep_figure(dg.threshold_sweep(diagnosis.preds["val"]), chosen=diagnosis.thresholds)
    save_figure(sweep, layout, "threshold_sweep")
    reliability = reliability_figure(diagnosis.preds)
    save_figure(reliability, layout, "reliability")
    calibration = diagnosis.report["calibration"]
    table = pd.DataFrame({split: calibration[split] for split in ("val", "test")}).T
    temperature = pd.Series({"temperature fit on validation": calibration["temperature"]}, name="calibration")
    return sweep, reliability, table, temperature


def per_source_table(diagnosis: Diagnosis) -> pd.DataFrame:
    manifest = diagnosis.manifest
    return dg.per_source_table(
        manifest[manifest["split"] == "test"], diagnosis.preds["test"], diagnosis.operating_threshold
    )


def hardest_clips(diagnosis: Diagnosis, params: Mapping, layout: RunLayout) -> tuple:
    """The hardest misclassified test clips and their frames with attention (saved as
    ``hardest_misclassified``); adds the per-source table and these clips to ``metrics.json``."""
    hardest = dg.hardest_misclassified(diagnosis.preds["test"], diagnosis.operating_threshold, k=params["n_hardest"])
    gallery = misclassified_gallery(diagnosis.model, diagnosis.manifest, diagnosis.splits["test"], hardest)
    save_figure(gallery, layout, "hardest_misclassified")
    write_json_atomic(
        layout.metrics,
        {
            **diagnosis.report,
            "per_source_test": per_source_table(diagnosis).to_dict("records"),
            "hardest_misclassified_test": hardest.to_dict("records"),
        },
    )
    names = clip_file_names(diagnosis.manifest)
    shown = pd.DataFrame(
        {
            "clip": [names.get(c, c) for c in hardest["clip_id"]],
            "true class": [CLASS_NAMES[int(y)] for y in hardest["y_true"]],
            "predicted": [CLASS_NAMES[int(p)] for p in hardest["pred"]],
            "probability of violent": hardest["prob"].round(3),
        }
    )
    return shown, gallery


def clip_file_names(manifest: pd.DataFrame) -> dict:
    """clip_id -> the clip's file name, as people name a clip (the id also carries the dataset's own folders,
    e.g. RWF-2000's ``val``, which this pipeline uses as its test split and which would read as a leak)."""
    if "rel_path" not in manifest.columns:
        return {}
    return {
        cid: str(rel).replace("\\", "/").rsplit("/", 1)[-1]
        for cid, rel in zip(manifest["clip_id"], manifest["rel_path"], strict=True)
    }


def misclassified_gallery(
    model, manifest: pd.DataFrame, split: FeatureSplit, hardest: pd.DataFrame, thumb_size: int = 96
) -> Figure:
    """Thumbnails of the sampled frames of each clip in ``hardest``, with per-frame attention.

    Models without an attention layer get equal weight per frame, and the title says so.
    A short notice replaces the gallery when nothing was misclassified.
    """
    if hardest.empty:
        fig = Figure(figsize=(6, 1))
        fig.text(0.5, 0.5, "No misclassified clips at the operating threshold.", ha="center", va="center")
        return fig
    position = {cid: i for i, cid in enumerate(split.clip_ids)}
    x = split.x[[position[cid] for cid in hardest["clip_id"]]]
    try:
        _, attention = predict_arrays(attention_model(model), x, batch_size=32)
        note = ""
    except ValueError:  # models without an attention layer: show the frames, uniform weights
        attention, note = np.full(x.shape[:2], 1.0 / x.shape[1]), " (no attention layer: uniform)"
    rows, names = manifest.set_index("clip_id"), clip_file_names(manifest)
    frames_list, titles = [], []
    for _, item in hardest.iterrows():  # attention_gallery_figure checks one attention row per clip
        row = rows.loc[item["clip_id"]]
        indices = sample_frame_indices(int(row["frames"]), x.shape[1])
        frames_list.append(read_frames(row["path"], indices, size=thumb_size))
        titles.append(
            f"{names.get(item['clip_id'], item['clip_id'])}: true {CLASS_NAMES[int(item['y_true'])]}, "
            f"P(violent) = {item['prob']:.2f}{note}"
        )
    return attention_gallery_figure(frames_list, [np.asarray(a, dtype=float) for a in attention], titles)


def publish_headline(diagnosis: Diagnosis, layout: RunLayout):
    """Headline figures, the per-class accuracy figure (``per_class_accuracy``) and the summary in plain words."""
    test = diagnosis.report["metrics"]["test"]["balanced_accuracy"]

    def with_ci(name):
        return {"value": test[name], "ci": [test[f"{name}_ci_low"], test[f"{name}_ci_high"]]}

    rows = [
        (label, test[key], test[f"{key}_ci_low"], test[f"{key}_ci_high"])
        for label, key in (
            ("all test clips", "accuracy"),
            ("violent clips", "acc_violent"),
            ("non-violent clips", "acc_nonviolent"),
        )
    ]
    save_figure(per_class_accuracy_figure(rows, title="test clips labelled correctly"), layout, "per_class_accuracy")
    result, verdict = describe_test_result(test, len(diagnosis.preds["test"]), diagnosis.recipe.describe())
    record_summary(layout.run_dir, "04_per_class_diagnostics", result, verdict)
    return record_headline(
        layout.run_dir,
        "04_per_class_diagnostics",
        {
            "test accuracy": with_ci("accuracy"),
            "test accuracy, violent clips": with_ci("acc_violent"),
            "test accuracy, non-violent clips": with_ci("acc_nonviolent"),
            "gap between the classes (test)": with_ci("class_gap"),
            "test ROC AUC": with_ci("roc_auc"),
            "operating threshold (chosen on validation)": {"value": diagnosis.operating_threshold, "format": "number"},
        },
    )


def describe_test_result(test: Mapping, n_clips: int, model: str | None = None) -> tuple[str, str]:
    """(result, verdict): the test accuracy with its CI in one sentence, and what it means in plain words.

    ``model``: the model carried forward in words (``RunRecipe.describe``), named first.

    The verdict reads the lower end of the 95% interval (how good the model is at least, with 95% confidence)
    and the gap between the classes (which kind of mistake dominates).
    """

    def pct(value):
        return f"{100 * value:.1f}%"

    acc, low, high = test["accuracy"], test["accuracy_ci_low"], test["accuracy_ci_high"]
    violent, calm = test["acc_violent"], test["acc_nonviolent"]
    named = f"The model carried forward, {model}, was tested on" if model else "On"
    result = (
        f"{named} {n_clips:,} test clips, never used for training or tuning: it labelled {pct(acc)} correctly "
        f"(95% CI {pct(low)} to {pct(high)}): {pct(violent)} of the violent clips and {pct(calm)} of the "
        "non-violent ones."
    )
    if low >= 0.9:
        verdict = f"Accurate on this data: even the low end of the 95% interval is above {pct(0.9)}."
    elif low >= 0.75:
        verdict = (
            "Useful, with room to improve: it is right on most clips, but the interval leaves room for more mistakes."
        )
    elif low > 0.5:
        verdict = "Better than chance, but not yet reliable enough to act on its alarms alone."
    else:
        verdict = "Not distinguishable from guessing on this data: the interval reaches 50%."
    if abs(violent - calm) >= 0.1:
        weaker = (
            "misses violent clips more often than it misflags calm ones"
            if violent < calm
            else "raises false alarms on calm clips more often than it misses violent ones"
        )
        verdict += f" It {weaker}."
    return result, verdict


def threshold_explorer(diagnosis: Diagnosis):
    """A slider over thresholds showing the test confusion matrix (JupyterLab only)."""
    test = diagnosis.preds["test"]
    return threshold_slider(test.y_true, test.prob, initial=diagnosis.operating_threshold)
