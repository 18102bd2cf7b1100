"""Glue shared by the notebooks: the run's data folders, its manifest, its feature streams, and
feature splits read back from the cache."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nexara_lib.config import Params
from nexara_lib.evaluation.predictions import Predictions
from nexara_lib.features.stream import FeatureStream
from nexara_lib.features.stream_set import StreamSet
from nexara_lib.io import read_json
from nexara_lib.layout import RunLayout
from nexara_lib.stages.formats import stream_set_words
from nexara_lib.video.synthetic import GROUPS_NAME, generate_synthetic_dataset

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
        out = Path(params["output_root"]) / "_synthetic" / f"n{params['synthetic_clips']}-seed{params['seed']}"
        generate_synthetic_dataset(out, params["synthetic_clips"], seed=params["seed"], progress=True)
        return [str(out)]
    return list(params["data_dir"])


def run_groups_csv(params: Mapping, data_dirs: list[str]) -> str | None:
    """The groups CSV the audit splits by: ``groups_csv`` when given, else the synthetic dataset's own
    ``groups.csv`` (its clips grouped by camera) when the run generates one, else None."""
    if params["groups_csv"] or not params["synthetic_clips"] > 0:
        return params["groups_csv"]
    return str(Path(data_dirs[0]) / GROUPS_NAME)


def load_manifest(layout: RunLayout) -> pd.DataFrame:
    """Usable clips of the run's manifest (the single source of truth written by notebook 01)."""
    manifest = pd.read_csv(layout.require(layout.manifest, "01_data_audit"), keep_default_na=False)
    usable = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    if usable.empty:
        raise ValueError(f"{layout.manifest} has no usable clips; see {layout.unusable}")
    return usable


def load_splits(
    manifest: pd.DataFrame, stream: FeatureStream | StreamSet, layout: RunLayout, splits=SPLITS
) -> dict[str, FeatureSplit]:
    """Features of ``stream`` (one stream or a stream set) for each split; a split without clips is a
    clear error."""
    out = {}
    for split in splits:
        rows = manifest[manifest["split"] == split]
        if rows.empty:
            raise ValueError(f"the manifest has no usable clips in split {split!r}; re-run the audit (notebook 01)")
        x, y, ids = stream.load(rows, layout.features)
        out[split] = FeatureSplit(split, x, y, ids)
    return out


def run_streams(params: Mapping) -> list[FeatureStream]:
    """Every feature stream this run needs: its own stream set, the candidate stream sets of the
    recipe selection, and the ensemble members' streams."""
    sets = [StreamSet.from_params(params)] + [StreamSet.parse(spec, params) for spec in params["candidate_streams"]]
    streams = [stream for stream_set in sets for stream in stream_set.streams]
    streams += [
        FeatureStream.for_member(member, params) for member in params["ensemble_members"] if "backbone" in member
    ]
    return list(dict.fromkeys(streams))


@dataclasses.dataclass(frozen=True)
class RunRecipe:
    """What notebooks 04-06 evaluate: the model notebook 03 carried forward, its parameters and streams.

    Without a recipe selection that is the run's own recipe trained on train (early stopping on val);
    with ``select_recipe: cv`` the winner refit on train + val, whose operating threshold and temperature
    come from its out-of-fold predictions (``validation``) instead of the validation split.
    """

    params: Mapping[str, Any]
    streams: StreamSet
    model_path: Path
    selection: dict | None

    def describe(self) -> str:
        """The carried-forward model in words, for the step summaries: its model, its streams, how it came."""
        what = f"{self.params['model']} on {stream_set_words(self.params['streams'])}"
        if self.selection is None:
            return f"{what} (the run's own recipe)"
        return f"{what} (chosen by cross-validation, refit on train + val)"

    def validation(self, fallback: Predictions) -> Predictions:
        """The predictions thresholds and calibration are chosen on: out-of-fold ones when selected."""
        if self.selection is None:
            return fallback
        oof = pd.DataFrame(self.selection["oof"])
        return Predictions(
            "val", oof["y"].to_numpy().astype(np.int64), oof["prob"].to_numpy(), tuple(oof["clip_id"].astype(str))
        )


def member_streams(member: Mapping, params: Mapping) -> StreamSet:
    """What an ensemble member reads: its own backbone's whole frame, else the run's stream set."""
    if "backbone" not in member:
        return StreamSet.from_params(params)
    stream = FeatureStream.for_member(member, params)
    return StreamSet((f"{stream.backbone}:identity",), (stream,))


def run_recipe(params: Mapping[str, Any], layout: RunLayout) -> RunRecipe:
    """The recipe notebook 03 carried forward (``artifacts/selection.json`` when it selected one)."""
    selection = read_json(layout.selection) if params["select_recipe"] == "cv" else None
    if selection is None:
        return RunRecipe(params, StreamSet.from_params(params), layout.model_dir(params["model"]) / "model.keras", None)
    carried = Params(
        {**params, **selection["carried"]["overrides"]},
        {key: "selection (notebook 03)" for key in selection["carried"]["overrides"]},
    )
    return RunRecipe(
        carried, StreamSet.from_params(carried), layout.run_dir / selection["carried"]["model_path"], selection
    )


def extraction_options(params: Mapping) -> dict:
    """``extract_features`` keyword arguments from the run's parameters (how to compute, not what)."""
    return {
        "batch_size": params["extract_batch_size"],
        "workers": params["extract_workers"],
        "executor": params["extract_executor"],
        "ray_address": params["ray_address"] or None,
        "mixed_precision": params["mixed_precision"],
    }


def with_augmented_copies(
    train: FeatureSplit, manifest: pd.DataFrame, layout: RunLayout, params: Mapping
) -> FeatureSplit:
    """The training split plus its ``frame_augment_copies`` augmented copies (clip ids '<id>#aug<k>').

    Only training clips have copies; validation and test stay clean. A copy that failed to
    decode is left out, its clean clip stays.
    """
    copies = params["frame_augment_copies"]
    if not copies or list(params["streams"]) != ["identity"]:  # copies are of the whole frame only
        return train
    rows = manifest[manifest["split"] == "train"]
    stream = FeatureStream.from_params(params)
    xs, ys, ids = [train.x], [train.y], list(train.clip_ids)
    for copy in range(1, copies + 1):
        x, y, clip_ids = stream.augmentation_copy(params["frame_augment_ops"], copy, params["seed"]).load(
            rows, layout.features
        )
        xs.append(x)
        ys.append(y)
        ids.extend(f"{c}#aug{copy}" for c in clip_ids)
    return FeatureSplit(train.name, np.concatenate(xs), np.concatenate(ys), ids)
