"""Notebook 03 glue: train the run's model on its features, and compare recipes on train + val."""
from __future__ import annotations

from typing import Mapping

import pandas as pd
from IPython.display import Markdown

from nexara_lib.features.stream import FeatureStream
from nexara_lib.labels import CLASS_NAMES
from nexara_lib.layout import RunLayout, save_figure
from nexara_lib.stages.data import FeatureSplit, load_manifest, load_splits, with_augmented_copies
from nexara_lib.stages.headline import record_headline
from nexara_lib.training.figures import plot_training_history
from nexara_lib.training.study import RecipeStudy, study_for_run
from nexara_lib.training.train import train_sequence_model


def training_splits(params: Mapping, layout: RunLayout) -> dict[str, FeatureSplit]:
    """Train / val / test features of the run's stream; the training split gets its augmented copies."""
    manifest = load_manifest(layout)
    splits = load_splits(manifest, FeatureStream.from_params(params), layout)
    splits["train"] = with_augmented_copies(splits["train"], manifest, layout, params)
    return splits


def splits_table(splits: Mapping[str, FeatureSplit]) -> pd.DataFrame:
    """Clips per split and class, and the feature shape."""
    return pd.DataFrame({name: {"clips": len(s), CLASS_NAMES[1]: int(s.y.sum()), CLASS_NAMES[0]: int((s.y == 0).sum()),
                                "T x D": f"{s.x.shape[1]} x {s.x.shape[2]}"} for name, s in splits.items()})


def train_run_model(splits: Mapping[str, FeatureSplit], params: Mapping, layout: RunLayout) -> dict:
    """Train (or resume) the run's model with early stopping on validation; prints one summary line."""
    result = train_sequence_model(splits["train"].x, splits["train"].y, splits["val"].x, splits["val"].y,
                                  config=params, out_dir=layout.model_dir(params["model"]), verbose=0)
    print(f"stopped after {result['epochs_run']} epochs ({result['stop_reason']}); best epoch {result['best_epoch']} "
          f"({result['monitor']} = {result['best_metrics'][result['monitor']]:.3f}); "
          f"{result['timings']['seconds_per_epoch']:.2f} s per epoch on {result['distribution']['replicas']} device(s)")
    return result


def training_curves(result: dict, params: Mapping, layout: RunLayout) -> tuple:
    """The training curves (saved as ``training_curves``) and the best epoch's validation metrics."""
    curves = plot_training_history(result["history"], params["gap_warning"], params["gap_critical"])
    save_figure(curves, layout, "training_curves")
    best = pd.Series(result["best_metrics"], name=f"best epoch {result['best_epoch']} of {result['epochs_run']}")
    return curves, best


def recipe_study(params: Mapping, layout: RunLayout) -> RecipeStudy | None:
    """The run's recipe study (cross-validation and/or ablations on train + val; never test)."""
    manifest = load_manifest(layout)
    stream = FeatureStream.from_params(params)
    return study_for_run(manifest, stream.cache_dir(layout.features), params,
                         layout.model_dir(params["model"]) / "study")


def recipe_study_views(study: RecipeStudy | None, layout: RunLayout, n_bootstrap: int = 1000) -> list:
    """What the notebook shows of the study, in order: what was compared, configurations, folds,
    summary, per-fold accuracy, paired differences and the plot (saved as ``recipe_study``)."""
    if study is None:
        return [Markdown("No cross-validation or ablation configured: set `cv_folds: 5` and/or "
                         "`ablation_configs: [ablation_overregularized.yaml]` to compare recipes.")]
    where = (f"grouped, stratified {study.cv_folds}-fold cross-validation on train + val (inner validation "
             "for early stopping carved from each fold's training clips)" if study.cv_folds >= 2 else
             "the fixed split: fit on train (early stopping on a grouped carve of train), scored on val")
    views = [Markdown(f"**{len(study.names)} configurations × {len(study.seeds)} seeds {study.seeds}** on {where}. "
                      "The test split is not used.")]
    if not study.configs.empty:
        views.append(study.configs)
    views += [study.folds, study.summary(), study.per_fold("accuracy")]
    comparison = study.comparison(n_bootstrap=n_bootstrap)
    if not comparison.empty:
        views.append(comparison)
    fig = study.figure()
    save_figure(fig, layout, "recipe_study")
    return views + [fig]


def publish_headline(result: dict, study: RecipeStudy | None, params: Mapping, layout: RunLayout):
    best = result["best_metrics"]
    return record_headline(layout.run_dir, "03_hybrid_training", {
        "model": params["model"], "best epoch": {"value": result["best_epoch"], "format": "number"},
        "val balanced accuracy": best["val_balanced_accuracy"], "val class gap": best["val_class_gap"],
        "seconds per epoch": {"value": result["timings"]["seconds_per_epoch"], "format": "number"},
        **(study.headline() if study is not None else {})})
