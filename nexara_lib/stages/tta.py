"""Stage 5 glue: predictions of the trained model under each TTA view, with their cost per clip.

Frame-level views re-extract features of transformed frames through the stage-2 cache
(under their own cache key); feature-level views transform cached features.
"""
from __future__ import annotations

import time
from typing import Mapping

import numpy as np
import pandas as pd

from nexara_lib.stages.data import extraction_options, feature_dir, load_splits
from nexara_lib.evaluation.metrics import Predictions
from nexara_lib.features.extract import extract_features
from nexara_lib.layout import RunLayout
from nexara_lib.io import read_json
from nexara_lib.training.train import predict_proba
from nexara_lib.evaluation.tta import get_tta_transform


def _extraction_seconds_per_clip(layout: RunLayout, key: str) -> float | None:
    for summary in read_json(layout.artifacts / "extraction.json", []):
        if summary.get("key") == key and summary.get("computed"):
            return summary["wall_s"] / summary["computed"]
    return None


def tta_view_predictions(model, manifest: pd.DataFrame, params: Mapping, layout: RunLayout,
                         progress: bool = True) -> tuple[dict, pd.DataFrame]:
    """Predict validation and test clips under every view in ``params['tta_transforms']``.

    Returns:
        (views, costs): ``views[name][split]`` is a ``Predictions`` over the clips every view could
        score (same order for all views); ``costs`` has one row per view with the extra seconds
        per clip it costs (feature extraction for frame-level views, plus one model pass).
    """
    eval_rows = manifest[manifest["split"].isin(["val", "test"])]
    clean_dir = feature_dir(layout, params)
    clean = load_splits(manifest, clean_dir, ("train", "val", "test"))
    # Feature noise is scaled by the per-dimension spread of the TRAINING features (never val/test).
    feature_std = clean["train"].x.reshape(-1, clean["train"].x.shape[-1]).std(axis=0)
    raw: dict[str, dict] = {}
    costs = []
    for name in params["tta_transforms"]:
        entry = get_tta_transform(name)
        extract_s = _extraction_seconds_per_clip(layout, clean_dir.name) if name == "identity" else 0.0
        if entry.level == "frame" and name != "identity":
            summary = extract_features(
                eval_rows, backbone=params["backbone"], weights=params["backbone_weights"],
                cache_root=layout.features, transform=name, progress=progress, **extraction_options(params))
            extract_s = summary["wall_s"] / summary["computed"] if summary["computed"] else None
            splits = load_splits(manifest, feature_dir(layout, params, transform=name), ("val", "test"))
        else:
            splits = {s: clean[s] for s in ("val", "test")}
        raw[name] = {}
        predict_s, n = 0.0, 0
        for split, fs in splits.items():
            x = fs.x
            if entry.level == "feature":
                x = entry.fn(x, feature_std=feature_std, seed=params["seed"]) if name == "feature_noise" else entry.fn(x)
            t0 = time.perf_counter()
            raw[name][split] = (fs.clip_ids, fs.y, predict_proba(model, x))
            predict_s += time.perf_counter() - t0
            n += len(fs)
        costs.append({"view": name, "level": entry.level, "extract_s_per_clip": extract_s,
                      "predict_s_per_clip": predict_s / max(n, 1)})
    return _align_views(raw), pd.DataFrame(costs)


def _align_views(raw: dict) -> dict:
    """Keep, per split, the clips every view scored (a clip may fail to decode under one transform)."""
    views: dict[str, dict] = {name: {} for name in raw}
    for split in ("val", "test"):
        common = set.intersection(*(set(raw[name][split][0]) for name in raw))
        for name, per_split in raw.items():
            ids, y, prob = per_split[split]
            keep = [i for i, cid in enumerate(ids) if cid in common]
            views[name][split] = Predictions(split, np.asarray(y)[keep], np.asarray(prob)[keep],
                                             tuple(ids[i] for i in keep))
    return views


def tta_slowdown(costs: pd.DataFrame, chosen: list[str]) -> dict:
    """Seconds per clip without TTA (identity) and with the chosen views, and the ratio."""
    table = costs.set_index("view")
    base_extract = table.loc["identity", "extract_s_per_clip"] if "identity" in table.index else None
    base_extract = float(base_extract) if base_extract is not None and not pd.isna(base_extract) else 0.0
    base = base_extract + float(table["predict_s_per_clip"].get("identity", table["predict_s_per_clip"].min()))
    with_tta = base_extract  # the clean frames are decoded once whatever the views
    for name in chosen:
        row = table.loc[name]
        extra = row["extract_s_per_clip"] if name != "identity" and row["level"] == "frame" else 0.0
        with_tta += float(extra or 0.0) + float(row["predict_s_per_clip"])
    return {"seconds_per_clip_without": base, "seconds_per_clip_with": with_tta,
            "slowdown_x": with_tta / base if base > 0 else None}


def views_table(views: dict, threshold: float) -> pd.DataFrame:
    """Balanced accuracy and AUC of every single view on validation and test at ``threshold``."""
    from nexara_lib.evaluation.metrics import binary_metrics
    rows = {}
    for name, per_split in views.items():
        row = {}
        for split, preds in per_split.items():
            metrics = binary_metrics(preds.y_true, preds.prob, threshold)
            row[f"{split} balanced accuracy"] = metrics["balanced_accuracy"]
            row[f"{split} AUC"] = metrics["roc_auc"]
        rows[name] = row
    return pd.DataFrame(rows).T
