"""Notebook 02 glue: extract (or resume) every feature stream of the run, and what the notebook shows."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from nexara_lib.features.backbones import describe_backbone
from nexara_lib.features.cache import read_clip_records
from nexara_lib.features.cache_migration import describe_legacy
from nexara_lib.features.extract import extract_augmented_copies, extract_features
from nexara_lib.features.stream import FeatureStream
from nexara_lib.io import read_json, write_json_atomic
from nexara_lib.labels import CLASS_NAMES
from nexara_lib.layout import RunLayout, save_figure
from nexara_lib.stages.data import extraction_options, load_manifest, load_splits, run_streams
from nexara_lib.stages.headline import record_headline, record_summary

STREAM_COLUMNS = [
    "backbone",
    "transform",
    "clips",
    "cached_before",
    "computed",
    "failed",
    "bad_entries",
    "renamed",
    "padded",
    "seeks",
    "decode_cpu_s",
    "model_s",
    "wait_s",
    "wall_s",
    "clips_per_s",
    "frames_per_s",
]


def backbone_facts(params: Mapping) -> pd.Series:
    """The registry facts of the run's backbone (input, feature size, preprocessing)."""
    return pd.Series(describe_backbone(params["backbone"]), name="backbone")


def extract_run_features(params: Mapping, layout: RunLayout, progress: bool = True) -> pd.DataFrame:
    """Extract (or resume) every feature stream of the run; writes ``artifacts/extraction.json``.

    Streams: the run's backbone and the ensemble members' backbones on every clip, plus
    ``frame_augment_copies`` augmented copies of the training clips for the run's backbone.

    Returns:
        One row per stream: computed / cached / failed / bad cache entry counts, entries renamed from the
        older, location-based cache names (``renamed``), throughput and the time split (decode CPU seconds over
        all decoders, model seconds, wait = backbone idle waiting for frames). Cache entries carried over from
        those names, or computed again because of them, are also said in words.
    """
    manifest = load_manifest(layout)
    options = extraction_options(params)
    summaries = [
        extract_features(manifest, stream, layout.features, progress=progress, **options)
        for stream in run_streams(params)
    ]
    if params["frame_augment_copies"]:
        summaries.extend(
            extract_augmented_copies(
                manifest[manifest["split"] == "train"],
                FeatureStream.from_params(params),
                layout.features,
                copies=params["frame_augment_copies"],
                ops=params["frame_augment_ops"],
                seed=params["seed"],
                progress=progress,
                **options,
            )
        )
    write_json_atomic(layout.artifacts / "extraction.json", summaries)
    table = pd.DataFrame(summaries)
    table["failed"] = table["failed"].map(len)
    table["bad_entries"] = table["bad_entries"].map(len)  # moved aside into <cache>/bad/ and computed again
    table["renamed"] = [s["legacy"]["renamed"]["count"] for s in summaries]
    for note in filter(None, map(describe_legacy, summaries)):
        print(note)
    return table[STREAM_COLUMNS]


def failed_clips(layout: RunLayout) -> pd.DataFrame:
    """Clips that could not be decoded during extraction (reported, then skipped downstream)."""
    rows = [
        dict(f, backbone=s["backbone"])
        for s in read_json(layout.artifacts / "extraction.json", [])
        for f in s["failed"]
    ]
    return pd.DataFrame(rows, columns=["backbone", "clip_id", "path", "reason"])


def reading_strategies(params: Mapping, layout: RunLayout) -> pd.DataFrame:
    """How the run's clips were read: sequential grabs or verified seeks, padding, decode cost per clip."""
    reads = read_clip_records(FeatureStream.from_params(params).cache_dir(layout.features))
    return reads.groupby("strategy").agg(
        clips=("file", "size"),
        frames=("n_frames", "median"),
        seeks=("seeks", "sum"),
        padded=("padded", "sum"),
        decode_cpu_s_per_clip=("decode_cpu_s", "mean"),
    )


def feature_overview(params: Mapping, layout: RunLayout) -> Figure:
    """Per-class feature norm over time and a PCA of the training split, saved as ``feature_overview``."""
    train = load_splits(load_manifest(layout), FeatureStream.from_params(params), layout, ("train",))["train"]
    fig = feature_overview_figure(train.x, train.y)
    save_figure(fig, layout, "feature_overview")
    return fig


def publish_headline(params: Mapping, layout: RunLayout, streams: pd.DataFrame):
    """Headline figures and the summary in plain words (clips encoded, failures, speed)."""
    main = streams.iloc[0]
    failed = int(main["failed"])
    speed = main["clips_per_s"]
    if pd.isna(speed):  # nothing computed this time (a rerun over a complete cache): no speed to speak of
        speed, pace = None, f"all of them already in the feature cache ({int(main['cached_before']):,} reused)"
    else:
        pace = f"at {speed:.1f} clips per second"
    result = (
        f"{int(main['clips']) - failed:,} clips were each turned into {params['frames_per_clip']} feature "
        f"vectors by the '{params['backbone']}' encoder, {pace}."
    )
    verdict = (
        "Every clip is ready for training."
        if not failed
        else f"{failed:,} clip(s) could not be decoded; they are listed below and left out, the others are ready."
    )
    record_summary(layout.run_dir, "02_feature_extraction", result, verdict)
    return record_headline(
        layout.run_dir,
        "02_feature_extraction",
        {
            "encoder (backbone)": params["backbone"],
            **({} if speed is None else {"clips per second": {"value": speed, "format": "number"}}),
            "clips that failed to decode": failed,
        },
    )


def feature_overview_figure(x: np.ndarray, y: np.ndarray):
    """Per-class mean feature norm over time (±1 std) and a PCA of time-pooled features.

    Args:
        x: (N, T, D) features of one split; y: (N,) labels.
    """
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_time, ax_pca = fig.subplots(1, 2)
    norms = np.linalg.norm(x, axis=2)
    pooled = StandardScaler().fit_transform(np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1))
    points = PCA(n_components=2, random_state=0).fit_transform(pooled) if len(x) > 2 else np.zeros((len(x), 2))
    for label, color in ((0, "tab:blue"), (1, "tab:red")):
        name = CLASS_NAMES[label]
        rows = norms[y == label]
        if len(rows) == 0:
            continue
        mean, std = rows.mean(axis=0), rows.std(axis=0)
        steps = np.arange(x.shape[1])
        ax_time.plot(steps, mean, color=color, label=name)
        ax_time.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
        ax_pca.scatter(*points[y == label].T, s=12, color=color, alpha=0.7, label=name)
    ax_time.set(xlabel="sampled frame", ylabel="feature L2 norm", title="features over time (training split)")
    ax_pca.set(xlabel="PC 1", ylabel="PC 2", title="PCA of time-pooled features (mean, std)")
    ax_time.legend()
    ax_pca.legend()
    return fig
