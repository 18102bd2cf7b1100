"""Glue between stages: where the clips come from, and feature splits read back from the cache."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from nexara_lib.features.extract import feature_cache_key, load_features
from nexara_lib.layout import RunLayout

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class FeatureSplit:
    """Cached features of one split: x (N, T, D) float32, y (N,) int, clip ids."""
    name: str
    x: np.ndarray
    y: np.ndarray
    clip_ids: list

    def __len__(self):
        return len(self.y)


def prepare_data_dirs(params: Mapping) -> list[str]:
    """Dataset roots of this run; generates the synthetic dataset when ``synthetic_clips`` > 0.

    Synthetic clips are written once under ``<output_root>/_synthetic/`` and reused by later runs
    with the same size and seed.
    """
    if params["synthetic_clips"] > 0:
        from nexara_lib.video.synthetic import generate_synthetic_dataset
        out = Path(params["output_root"]) / "_synthetic" / f"n{params['synthetic_clips']}-seed{params['seed']}"
        generate_synthetic_dataset(out, params["synthetic_clips"], seed=params["seed"], progress=True)
        return [str(out)]
    return list(params["data_dir"])


def load_manifest(layout: RunLayout) -> pd.DataFrame:
    """Usable clips of the run's manifest (the single source of truth written by notebook 01)."""
    manifest = pd.read_csv(layout.require(layout.manifest, "01_data_audit"), keep_default_na=False)
    usable = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    if usable.empty:
        raise ValueError(f"{layout.manifest} has no usable clips; see {layout.unusable}")
    return usable


def feature_dir(layout: RunLayout, params: Mapping, backbone: str | None = None,
                weights: str | None = None, transform: str = "identity") -> Path:
    """Cache folder of one feature set of this run (default: the run's backbone)."""
    key = feature_cache_key(backbone or params["backbone"], weights or params["backbone_weights"],
                            params["frames_per_clip"], params["image_size"], transform)
    return layout.features / key


def load_splits(manifest: pd.DataFrame, cache_dir: Path, splits=SPLITS) -> dict[str, FeatureSplit]:
    """Features of each split from ``cache_dir``; a split without clips is a clear error."""
    out = {}
    for split in splits:
        rows = manifest[manifest["split"] == split]
        if rows.empty:
            raise ValueError(f"the manifest has no usable clips in split {split!r}; re-run the audit (notebook 01)")
        x, y, ids = load_features(rows, cache_dir)
        out[split] = FeatureSplit(split, x, y, ids)
    return out


def member_backbone(member: Mapping, params: Mapping) -> tuple[str, str]:
    """(backbone, weights) of an ensemble member; defaults to the run's."""
    backbone = member.get("backbone", params["backbone"])
    default_weights = params["backbone_weights"] if backbone == params["backbone"] else (
        "none" if backbone == "flow" else "imagenet")
    return backbone, member.get("backbone_weights", default_weights)


def run_feature_streams(params: Mapping) -> list[tuple[str, str]]:
    """Every (backbone, weights) this run needs: the main one plus the ensemble members' streams."""
    streams = [(params["backbone"], params["backbone_weights"])]
    for member in params["ensemble_members"]:
        stream = member_backbone(member, params)
        if stream not in streams:
            streams.append(stream)
    return streams


def extraction_options(params: Mapping) -> dict:
    """``extract_features`` keyword arguments from the run's parameters (all but backbone and weights)."""
    return {"frames_per_clip": params["frames_per_clip"], "image_size": params["image_size"],
            "batch_size": params["extract_batch_size"], "workers": params["extract_workers"],
            "executor": params["extract_executor"], "ray_address": params["ray_address"] or None,
            "mixed_precision": params["mixed_precision"]}


def extract_run_features(manifest: pd.DataFrame, params: Mapping, layout: RunLayout,
                         progress: bool = True) -> pd.DataFrame:
    """Extract (or resume) every feature stream of the run; writes ``artifacts/extraction.json``.

    Streams: the run's backbone and the ensemble members' backbones on every clip, plus
    ``frame_augment_copies`` augmented copies of the training clips for the run's backbone.

    Returns:
        One row per stream: computed / cached / failed counts, throughput and the time split
        (decode CPU seconds over all decoders, model seconds, wait = backbone idle waiting for frames).
    """
    from nexara_lib.features.extract import extract_augmented_copies, extract_features
    from nexara_lib.io import write_json_atomic
    options = extraction_options(params)
    summaries = []
    for backbone, weights in run_feature_streams(params):
        summaries.append(extract_features(manifest, backbone=backbone, weights=weights, cache_root=layout.features,
                                          progress=progress, **options))
    if params["frame_augment_copies"]:
        summaries.extend(extract_augmented_copies(
            manifest[manifest["split"] == "train"], copies=params["frame_augment_copies"],
            ops=params["frame_augment_ops"], seed=params["seed"], backbone=params["backbone"],
            weights=params["backbone_weights"], cache_root=layout.features, progress=progress, **options))
    write_json_atomic(layout.artifacts / "extraction.json", summaries)
    table = pd.DataFrame(summaries)
    table["failed"] = table["failed"].map(len)
    return table[["backbone", "transform", "clips", "cached_before", "computed", "failed", "padded", "seeks",
                  "decode_cpu_s", "model_s", "wait_s", "wall_s", "clips_per_s", "frames_per_s"]]


def with_augmented_copies(train: FeatureSplit, manifest: pd.DataFrame, layout: RunLayout,
                          params: Mapping) -> FeatureSplit:
    """The training split plus its ``frame_augment_copies`` augmented copies (clip ids '<id>#aug<k>').

    Only training clips have copies; validation and test stay clean. A copy that failed to
    decode is left out, its clean clip stays.
    """
    copies = params["frame_augment_copies"]
    if not copies:
        return train
    from nexara_lib.features.frame_augment import augmentation_transform_name
    rows = manifest[manifest["split"] == "train"]
    xs, ys, ids = [train.x], [train.y], list(train.clip_ids)
    for copy in range(1, copies + 1):
        name = augmentation_transform_name(params["frame_augment_ops"], copy, params["seed"])
        x, y, clip_ids = load_features(rows, feature_dir(layout, params, transform=name))
        xs.append(x)
        ys.append(y)
        ids.extend(f"{c}#aug{copy}" for c in clip_ids)
    return FeatureSplit(train.name, np.concatenate(xs), np.concatenate(ys), ids)


def failed_clips(layout: RunLayout) -> pd.DataFrame:
    """Clips that could not be decoded during extraction (reported, then skipped downstream)."""
    from nexara_lib.io import read_json
    rows = [dict(f, backbone=s["backbone"]) for s in read_json(layout.artifacts / "extraction.json", [])
            for f in s["failed"]]
    return pd.DataFrame(rows, columns=["backbone", "clip_id", "path", "reason"])
