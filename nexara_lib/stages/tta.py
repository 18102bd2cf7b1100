"""Notebook 05 glue: the trained model's predictions under each TTA view with their cost per clip, the
views chosen on validation, and the one comparison on test with and without TTA.

Frame-level views re-extract features of transformed frames through the stage-2 cache
(under their own cache key); feature-level views transform cached features.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import keras
import numpy as np
import pandas as pd
from IPython.display import Markdown

from nexara_lib.evaluation.metrics import binary_metrics
from nexara_lib.evaluation.predictions import Predictions
from nexara_lib.evaluation.stats import (
    before_after_rows,
    decision_in_words,
    describe_comparison,
    difference_rows,
    mcnemar_in_words,
)
from nexara_lib.evaluation.tta import aggregate, choose_tta_views
from nexara_lib.evaluation.tta import compare_with_without as compare
from nexara_lib.features.cache_migration import describe_legacy
from nexara_lib.features.extract import extract_features
from nexara_lib.features.stream_set import StreamSet
from nexara_lib.io import read_json, write_json_atomic
from nexara_lib.layout import RunLayout
from nexara_lib.stages.data import extraction_options, load_manifest, load_splits, run_recipe
from nexara_lib.stages.diagnostics import load_run_model
from nexara_lib.stages.formats import format_seconds
from nexara_lib.stages.headline import record_headline, record_summary
from nexara_lib.training.train import predict_proba
from nexara_lib.transforms.registry import get_transform


@dataclasses.dataclass
class ScoredViews:
    """Every view's validation and test predictions, their cost, and the run's operating threshold."""

    views: dict[str, dict[str, Predictions]]
    costs: pd.DataFrame
    threshold: float
    model: str = ""  # the model carried forward, in words (RunRecipe.describe)


def score_views(params: Mapping, layout: RunLayout, progress: bool = True) -> ScoredViews:
    """Predict validation and test clips with the run's model under every view in ``tta_transforms``,
    at the operating threshold notebook 04 chose on validation."""
    recipe = run_recipe(params, layout)
    model = load_run_model(recipe, layout)
    threshold = read_json(layout.require(layout.metrics, "04_per_class_diagnostics"))["thresholds"]["balanced_accuracy"]
    views, costs = tta_view_predictions(model, load_manifest(layout), recipe.params, layout, progress=progress)
    return ScoredViews(views, costs, threshold, recipe.describe())


def _extraction_seconds_per_clip(layout: RunLayout, key: str) -> float | None:
    for summary in read_json(layout.artifacts / "extraction.json", []):
        if summary.get("key") == key and summary.get("computed"):
            return summary["wall_s"] / summary["computed"]
    return None


def tta_view_predictions(
    model: keras.Model, manifest: pd.DataFrame, params: Mapping, layout: RunLayout, progress: bool = True
) -> tuple[dict, pd.DataFrame]:
    """Predict validation and test clips under every view in ``params['tta_transforms']``.

    Returns:
        (views, costs): ``views[name][split]`` is a ``Predictions`` over the clips every view could
        score (same order for all views); ``costs`` has one row per view with the extra seconds
        per clip it costs (feature extraction for frame-level views, plus one model pass).
    """
    eval_rows = manifest[manifest["split"].isin(["val", "test"])]
    streams = StreamSet.from_params(params)
    clean = load_splits(manifest, streams, layout, ("train", "val", "test"))
    # Feature noise is scaled by the per-dimension spread of the TRAINING features (never val/test).
    feature_std = clean["train"].x.reshape(-1, clean["train"].x.shape[-1]).std(axis=0)
    raw: dict[str, dict] = {}
    costs = []
    for name in params["tta_transforms"]:
        entry = get_transform(name)
        if entry.level == "frame" and name != "identity" and streams.single is None:
            # a frame view of several streams (a crop, tiles, another backbone) at once is not defined
            costs.append(
                {
                    "view": name,
                    "level": entry.level,
                    "extract_s_per_clip": None,
                    "predict_s_per_clip": None,
                    "skipped": f"frame views need one whole-frame stream; the run reads {streams.name}",
                }
            )
            continue
        extract_s = (
            _extraction_seconds_per_clip(layout, streams.streams[0].key)
            if name == "identity" and streams.single
            else 0.0
        )
        if entry.level == "frame" and name != "identity":
            view = streams.with_transform(name)
            summary = extract_features(
                eval_rows, view.streams[0], layout.features, progress=progress, **extraction_options(params)
            )
            extract_s = summary["wall_s"] / summary["computed"] if summary["computed"] else None
            if describe_legacy(summary):  # entries carried over from the older, location-based cache names
                print(describe_legacy(summary))
            splits = load_splits(manifest, view, layout, ("val", "test"))
        else:
            splits = {s: clean[s] for s in ("val", "test")}
        raw[name] = {}
        predict_s, n = 0.0, 0
        for split, fs in splits.items():
            x = fs.x
            if entry.level == "feature":
                x = entry.apply(x, entry.view_params(seed=params["seed"]), feature_std=feature_std)
            t0 = time.perf_counter()
            raw[name][split] = (fs.clip_ids, fs.y, predict_proba(model, x))
            predict_s += time.perf_counter() - t0
            n += len(fs)
        costs.append(
            {
                "view": name,
                "level": entry.level,
                "extract_s_per_clip": extract_s,
                "predict_s_per_clip": predict_s / max(n, 1),
            }
        )
    return _align_views(raw), pd.DataFrame(costs)


def _align_views(raw: dict) -> dict:
    """Keep, per split, the clips every view scored (a clip may fail to decode under one transform)."""
    views: dict[str, dict] = {name: {} for name in raw}
    for split in ("val", "test"):
        common = set.intersection(*(set(raw[name][split][0]) for name in raw))
        for name, per_split in raw.items():
            ids, y, prob = per_split[split]
            keep = [i for i, cid in enumerate(ids) if cid in common]
            views[name][split] = Predictions(
                split, np.asarray(y)[keep], np.asarray(prob)[keep], tuple(ids[i] for i in keep)
            )
    return views


def tta_slowdown(costs: pd.DataFrame, chosen: list[str]) -> dict:
    """Seconds per clip without TTA (identity) and with the chosen views, and the ratio."""
    table = costs.set_index("view")
    identity_extract = table["extract_s_per_clip"].get("identity")
    base_extract = float(identity_extract) if identity_extract is not None and not pd.isna(identity_extract) else 0.0
    base = base_extract + float(table["predict_s_per_clip"].get("identity", table["predict_s_per_clip"].min()))
    with_tta = base_extract  # the clean frames are decoded once whatever the views
    for name in chosen:
        row = table.loc[name].to_dict()  # one row per view
        extra = row["extract_s_per_clip"] if name != "identity" and row["level"] == "frame" else 0.0
        with_tta += float(extra or 0.0) + float(row["predict_s_per_clip"])
    return {
        "seconds_per_clip_without": base,
        "seconds_per_clip_with": with_tta,
        "slowdown_x": with_tta / base if base > 0 else None,
    }


def views_table(views: dict, threshold: float) -> pd.DataFrame:
    """Balanced accuracy and AUC of every single view on validation and test at ``threshold``."""
    rows = {}
    for name, per_split in views.items():
        row = {}
        for split, preds in per_split.items():
            metrics = binary_metrics(preds.y_true, preds.prob, threshold)
            row[f"{split} balanced accuracy"] = metrics["balanced_accuracy"]
            row[f"{split} AUC"] = metrics["roc_auc"]
        rows[name] = row
    return pd.DataFrame(rows).T


def single_view_table(scored: ScoredViews) -> pd.DataFrame:
    """Each view alone on validation and test, at the operating threshold."""
    return views_table(scored.views, scored.threshold)


def compare_with_and_without(scored: ScoredViews, params: Mapping, layout: RunLayout) -> dict:
    """Choose the views on validation, then compare with and without them on test (McNemar,
    bootstrap CI of the difference) and measure the slowdown; writes ``tta_results.json``."""
    views, threshold = scored.views, scored.threshold
    method = params["tta_aggregation"]
    chosen = choose_tta_views({name: v["val"] for name, v in views.items()}, method=method, threshold=threshold)
    test_with = aggregate([views[name]["test"].prob for name in chosen], method=method)
    without = views["identity"]["test"]
    comparison = compare(
        without.y_true,
        without.prob,
        test_with,
        threshold=threshold,
        n_bootstrap=params["bootstrap_samples"],
        seed=params["seed"],
    )
    cost = tta_slowdown(scored.costs, chosen)
    verdict = describe_comparison("TTA vs no TTA", comparison["accuracy_diff_ci"], comparison["mcnemar"]["p_value"])
    result = {
        "model": scored.model,
        "chosen": chosen,
        "threshold": threshold,
        "comparison": comparison,
        "verdict": verdict,
        "costs": scored.costs.to_dict("records"),
        "latency": cost,
    }
    write_json_atomic(layout.tta_results, result)
    return result


def verdict(result: dict) -> Markdown:
    return Markdown(f"**{result['verdict']}**\n\nViews chosen on validation: {', '.join(result['chosen'])}.")


def comparison_tables(result: dict) -> list:
    """Per-class metrics without and with TTA on test, the changes with their 95% CIs, and the McNemar test."""
    comparison = result["comparison"]
    mcnemar = comparison["mcnemar"]
    return [
        pd.DataFrame(before_after_rows(comparison, ("without TTA", "with TTA"), ("without", "with"))),
        pd.DataFrame(difference_rows(comparison)),
        pd.Series(mcnemar_in_words(mcnemar, "TTA"), name="the same test clips with and without TTA"),
    ]


def latency_tables(scored: ScoredViews, result: dict) -> list:
    """What each view costs per clip (frame extraction for frame-level views, one model pass), and the time
    per clip without and with the chosen views."""

    def seconds(value):
        return "none" if value is None or not np.isfinite(value) or value == 0 else format_seconds(float(value))

    costs = pd.DataFrame(
        {
            "view": scored.costs["view"],
            "level": scored.costs["level"],
            "frame extraction per clip": [seconds(v) for v in scored.costs["extract_s_per_clip"]],
            "model pass per clip": [seconds(v) for v in scored.costs["predict_s_per_clip"]],
        }
    )
    latency = result["latency"]
    return [
        costs,
        pd.Series(
            {
                "time per clip without TTA": seconds(latency["seconds_per_clip_without"]),
                "time per clip with the chosen views": seconds(latency["seconds_per_clip_with"]),
                "slowdown": f"{latency['slowdown_x']:.1f} times",
            },
            name="latency",
        ),
    ]


def publish_headline(result: dict, layout: RunLayout):
    """Headline figures and the summary in plain words (the effect with its CI, and whether it is worth the cost)."""
    comparison, diff = result["comparison"], result["comparison"]["accuracy_diff_ci"]
    slowdown = result["latency"]["slowdown_x"]
    advice = decision_in_words("test-time augmentation", diff, comparison["mcnemar"]["p_value"])
    views = (
        "No altered view helped on the validation clips, so none was added."
        if result["chosen"] == ["identity"]
        else f"Views chosen on validation: {', '.join(result['chosen'])}; scoring takes {slowdown:.1f} times as long."
    )
    on = f"Test-time views on the model carried forward, {result['model']}. " if result.get("model") else ""
    verdict = f"{result['verdict'][0].upper()}{result['verdict'][1:]}"
    record_summary(layout.run_dir, "05_tta", f"{on}{verdict} {views}", advice)
    return record_headline(
        layout.run_dir,
        "05_tta",
        {
            "verdict": result["verdict"],
            "views (chosen on validation)": ", ".join(result["chosen"]),
            "test accuracy change": {"value": diff[0], "ci": [diff[1], diff[2]], "format": "delta"},
            "McNemar p-value": {"value": comparison["mcnemar"]["p_value"], "format": "number"},
            "slowdown (times)": {"value": slowdown, "format": "number"},
        },
    )
