"""Notebook 07 glue: export the carried-forward model for the edge, check every export against Keras and
the live detector against offline extraction. Running the detector on long test videos and a 2x2 camera
grid assembled from the run's test clips, with and without confirmation, is ``stages.deploy_videos``
(re-exported here: the notebook calls one module)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown

from nexara_lib.deploy.detect import detect, streams_from_export
from nexara_lib.deploy.export import export_head, load_export
from nexara_lib.deploy.head import KerasHead
from nexara_lib.deploy.parity import TOLERANCES, head_latency, head_parity, probability_parity
from nexara_lib.deploy.window_features import WindowFeatures
from nexara_lib.evaluation.ensemble import EnsembleArtifact
from nexara_lib.evaluation.predictions import Predictions
from nexara_lib.evaluation.thresholds import choose_threshold, sweep_thresholds
from nexara_lib.features.backbones import use_pretrained_dir
from nexara_lib.io import write_json_atomic
from nexara_lib.layout import RunLayout
from nexara_lib.stages.data import load_manifest, load_splits, member_streams, run_recipe
from nexara_lib.stages.deploy_videos import (  # noqa: F401  (re-exported: notebook 07 calls them from here)
    CALM_RUN,
    VIOLENT_RUN,
    TestVideos,
    build_test_videos,
    confirmation_tradeoff,
    describe_deployment,
    detection_table,
    fight_pattern,
    formatted,
    publish_results,
    run_detector,
    timelines,
    tradeoff_verdict,
    tradeoff_view,
)
from nexara_lib.stages.diagnostics import load_run_model
from nexara_lib.stages.ensemble import member_name
from nexara_lib.training.model_files import load_sequence_model
from nexara_lib.training.train import predict_proba

# Stream vs offline: the live detector must give the offline probability within this (float32 head).
STREAM_TOLERANCE = 1e-4


def export_model(params: Mapping, layout: RunLayout) -> dict:
    """Export what notebook 03 carried forward (``export.json`` + heads under ``artifacts/export``).

    The on-threshold is chosen on validation (out-of-fold predictions when 03 selected the recipe) at the
    target false-alarm rate ``detect_false_alarm_rate``; the window is ``detect_window_s``, by default the
    median training clip duration (what the model was trained on).
    """
    use_pretrained_dir(params.get("pretrained_dir"))
    recipe = run_recipe(params, layout)
    manifest = load_manifest(layout)
    val = load_splits(manifest, recipe.streams, layout, ("val",))["val"]
    model = load_run_model(recipe, layout)
    val_preds = recipe.validation(Predictions("val", val.y, predict_proba(model, val.x), tuple(val.clip_ids)))
    on = choose_threshold(val_preds, "max_fpr", max_fpr=params["detect_false_alarm_rate"])
    at = sweep_thresholds(val_preds.y_true, val_preds.prob, [on])
    train = manifest[manifest["split"] == "train"]
    window_s = params["detect_window_s"] or float(pd.to_numeric(train["duration_s"], errors="coerce").median())
    if not np.isfinite(window_s):
        raise ValueError(
            "the manifest has no clip durations for the training split: rerun the audit (notebook 01), "
            "or set detect_window_s"
        )
    facts = {
        "run": {"name": layout.run_dir.name, "model": recipe.params["model"], "stream_set": recipe.streams.name},
        "streams": [
            {**s.describe(), "item": item} for item, s in zip(recipe.streams.items, recipe.streams.streams, strict=True)
        ],
        "window_s": window_s,
        "window_from": "detect_window_s" if params["detect_window_s"] else "median training clip duration",
        "threshold": {
            "on": float(on),
            "false_alarm_rate": float(params["detect_false_alarm_rate"]),
            "validation_fpr": float(at["fpr"][0]),
            "validation_recall": float(at["tpr"][0]),
            "chosen_on": "out-of-fold predictions on train + val" if recipe.selection else "validation",
        },
    }
    return export_head(recipe.model_path, layout.export_dir, variants=tuple(params["export_variants"]), facts=facts)


def export_ensemble(params: Mapping, layout: RunLayout) -> dict | None:
    """Export the members of notebook 06's ensemble (float32 heads, ``export/ensemble/<member>/``) and its
    combination (``export/ensemble/ensemble.json``); None when the run has no ensemble (or one trained with
    other members than the run's parameters name: rerun 06 first)."""
    path = layout.ensemble_dir / "ensemble.json"
    if not path.exists():
        return None
    artifact = EnsembleArtifact.load(path)
    carried = run_recipe(params, layout).params
    members = list(carried["ensemble_members"])
    names = [member_name(i, m, carried) for i, m in enumerate(members)]
    if names != list(artifact.metadata.get("members", [])):
        return None
    folder = layout.export_dir / "ensemble"
    entries = []
    for name, member, model_path in zip(names, members, artifact.member_paths, strict=True):
        streams = member_streams(member, carried)
        export_head(
            model_path,
            folder / name,
            variants=("float32",),
            facts={
                "member": name,
                "streams": [
                    {**s.describe(), "item": item} for item, s in zip(streams.items, streams.streams, strict=True)
                ],
            },
        )
        entries.append({"name": name, "export": name, "streams": list(streams.items)})
    combination = {
        "method": artifact.method,
        "weights": artifact.weights,
        "stacking_coef": artifact.stacking_coef,
        "stacking_intercept": artifact.stacking_intercept,
        "threshold": artifact.threshold,
        "members": entries,
    }
    write_json_atomic(folder / "ensemble.json", combination)
    return combination


def ensemble_parity(ensemble: dict | None, params: Mapping, layout: RunLayout) -> pd.DataFrame:
    """The ensemble with exported float32 members against the Keras ensemble on the test clips (one row)."""
    if ensemble is None:
        return pd.DataFrame(columns=["variant"]).set_index("variant")
    artifact = EnsembleArtifact.load(layout.ensemble_dir / "ensemble.json")
    carried = run_recipe(params, layout).params
    manifest = load_manifest(layout)
    features, y = [], None
    for member in carried["ensemble_members"]:
        split = load_splits(manifest, member_streams(member, carried), layout, ("test",))["test"]
        if y is not None and (len(split.y) != len(y) or not np.array_equal(split.y, y)):
            raise ValueError("the ensemble members' test clips differ; rerun notebooks 02 and 06")
        features.append(split.x)
        y = split.y
    keras_p = artifact.combine(
        [KerasHead(load_sequence_model(p)).predict(x) for p, x in zip(artifact.member_paths, features, strict=True)]
    )
    heads = [load_export(layout.export_dir / "ensemble" / m["export"], "float32")[0] for m in ensemble["members"]]
    lite_p = artifact.combine([head.predict(x) for head, x in zip(heads, features, strict=True)])
    row = probability_parity(
        "ensemble (float32 members)", keras_p, lite_p, y, artifact.threshold, TOLERANCES["float32"]
    )
    return pd.DataFrame([row]).set_index("variant")


def export_table(export: dict) -> pd.DataFrame:
    """What was exported: one row per file, sizes in kB."""
    rows = [
        {"variant": name, "file": v["file"], "size (kB)": round(v["bytes"] / 1024, 1), "sha256": v["sha256"][:12]}
        for name, v in export["variants"].items()
    ]
    return pd.DataFrame(rows).set_index("variant")


def export_facts(export: dict) -> Markdown:
    """The facts a detector needs, in words."""
    threshold = export["threshold"]
    streams = "; ".join(f"{s['item']}: {s['backbone']} ({s['preprocessing']})" for s in export["streams"])
    facts = {
        "model": export["run"]["model"],
        "streams": streams,
        "frames per window (T) x features (D)": f"{export['input']['T']} x {export['input']['D']}",
        "window": f"{export['window_s']:.1f} s ({export.get('window_from', 'median training clip duration')})",
        "on-threshold": f"{threshold['on']:.3f}, for a false-alarm rate of {threshold['false_alarm_rate']:.0%} "
        f"per window on {threshold['chosen_on']}",
        "validation at that threshold": f"false alarms {threshold['validation_fpr']:.1%} of non-violent clips, "
        f"violent clips caught {threshold['validation_recall']:.1%}",
    }
    return Markdown("\n".join(f"- **{key}**: {value}" for key, value in facts.items()))


def parity_view(parity: pd.DataFrame, latency: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The parity and latency tables as a reader sees them (fixed decimals, yes/no)."""
    return (
        formatted(
            parity,
            {
                "max |Δp|": ".6f",
                "mean |Δp|": ".6f",
                "label agreement": ".1%",
                "AUC Keras": ".3f",
                "AUC variant": ".3f",
                "AUC change": "+.3f",
                "tolerance": "g",
                "within tolerance": "yes/no",
            },
        ),
        formatted(latency, {"ms per call": ".3f", "ms per window": ".3f"}),
    )


def parity_tables(export: dict, params: Mapping, layout: RunLayout) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every export against Keras on the run's test features (and the ensemble of exported members against the
    Keras ensemble, where the run has one), and latency per window at batch 1 and 9."""
    recipe = run_recipe(params, layout)
    test = load_splits(load_manifest(layout), recipe.streams, layout, ("test",))["test"]
    reference = KerasHead(load_run_model(recipe, layout))
    heads = {name: load_export(layout.export_dir, name)[0] for name in export["variants"]}
    parity = head_parity(reference, heads, test.x, test.y, export["threshold"]["on"]).set_index("variant")
    parity = pd.concat([parity, ensemble_parity(export_ensemble(params, layout), params, layout)])
    latency = head_latency({"keras": reference, **heads}, batches=(1, 9), repeats=10).set_index(["variant", "batch"])
    return parity, latency


def stream_vs_offline(export: dict, params: Mapping, layout: RunLayout, clips: int = 3) -> pd.DataFrame:
    """Test clips fed frame by frame through the detector (a window of exactly the clip's length) against
    the same float32 head on their offline (cached) features."""
    manifest = load_manifest(layout)
    recipe = run_recipe(params, layout)
    rows = manifest[manifest["split"] == "test"].head(clips)
    offline = load_splits(rows.assign(split="test"), recipe.streams, layout, ("test",))["test"]
    head, _ = load_export(layout.export_dir, "float32")
    features = WindowFeatures(streams_from_export(export))
    out: list[dict] = []
    for (_, row), x in zip(rows.iterrows(), offline.x, strict=True):
        window_s = float(row["frames"]) / float(row["fps"])
        result = detect(
            [row["path"]],
            layout.export_dir,
            {**params, "detect_stride": 1.0, "detect_align_windows": False},  # the window is exactly the clip
            layout.deploy_dir / "parity" / f"clip-{len(out)}",
            variant="float32",
            window_s=window_s,
            features=features,
            figure=False,
            evidence=False,
        )
        scored = result.windows[result.windows["state"] == "scored"]
        live = float(scored["score"].iloc[0]) if len(scored) else float("nan")
        p_offline = float(head.predict(x[None])[0])
        out.append(
            {
                "clip": Path(row["path"]).name,
                "frames": int(row["frames"]),
                "fps": float(row["fps"]),
                "offline p": p_offline,
                "live p": live,
                "|Δp|": abs(live - p_offline),
                "within 0.0001": bool(abs(live - p_offline) <= STREAM_TOLERANCE),
            }
        )
    return pd.DataFrame(out).set_index("clip")


def stream_view(stream: pd.DataFrame) -> pd.DataFrame:
    """The live-vs-offline table as a reader sees it."""
    return formatted(
        stream, {"fps": ".2f", "offline p": ".6f", "live p": ".6f", "|Δp|": ".6f", "within 0.0001": "yes/no"}
    )
