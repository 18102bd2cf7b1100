"""Several feature streams side by side: parsing, loading (concatenated per frame, clips in every stream),
the run's streams to extract, and which recipe notebooks 04-06 evaluate."""

import json

import numpy as np
import pandas as pd
import pytest

from nexara_lib.features.cache import clip_cache_name
from nexara_lib.features.cache_entries import write_entry
from nexara_lib.features.stream import FeatureStream
from nexara_lib.features.stream_set import StreamSet
from nexara_lib.layout import RunLayout
from nexara_lib.run.params import resolve_params
from nexara_lib.stages.data import member_streams, run_recipe, run_streams


@pytest.fixture
def params(tmp_path):
    return resolve_params(
        [],
        {
            "synthetic_clips": 8,
            "output_root": str(tmp_path),
            "backbone": "flow",
            "backbone_weights": "none",
            "frames_per_clip": 4,
            "streams": ["identity", "motion_crop"],
            "candidate_streams": ["identity+tiles"],
        },
    )


def test_items_name_views_and_other_backbones(params):
    streams = StreamSet.parse("identity+motion_crop", params)
    assert streams.name == "identity+motion_crop" and streams.single is None
    assert streams.streams[1].key == "flow-none-T4-S112-motion_crop-f0.50"
    other = StreamSet.parse(["mobilenet_v1_tflite:identity"], params).single
    assert (other.backbone, other.weights, other.frames_per_clip) == ("mobilenet_v1_tflite", "imagenet", 4)
    assert StreamSet.from_params(params).feature_dim == 2 * FeatureStream("flow", "none", 4).feature_dim
    with pytest.raises(ValueError, match="names a stream twice"):
        StreamSet.parse("identity+identity", params)
    with pytest.raises(ValueError, match="one whole-frame stream"):
        streams.with_transform("hflip")
    assert StreamSet.parse("identity", params).with_transform("hflip").single.transform == "hflip"


def test_the_run_extracts_its_streams_the_candidates_and_member_backbones(params):
    keys = [s.key for s in run_streams(params)]
    assert keys == ["flow-none-T4-S112-identity", "flow-none-T4-S112-motion_crop-f0.50", "flow-none-T4-S112-tiles-2x2"]
    assert member_streams({"model": "bigru"}, params).name == "identity+motion_crop"
    assert member_streams({"model": "bigru", "backbone": "flow"}, params).name == "flow:identity"


def _write(stream, rows, cache_root, dim, offset, skip=()):
    folder = stream.cache_dir(cache_root)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (_, row) in enumerate(rows.iterrows()):
        if row["clip_id"] not in skip:
            write_entry(folder / clip_cache_name(row), np.full((4, dim), offset + i, dtype=np.float16))


def test_loading_concatenates_per_frame_and_keeps_clips_every_stream_has(params, tmp_path):
    rows = pd.DataFrame([{"clip_id": f"c{i}", "path": f"/x/{i}.avi", "label": i % 2} for i in range(5)])
    streams = StreamSet.parse("identity+motion_crop", params)
    dim = FeatureStream("flow", "none", 4).feature_dim
    _write(streams.streams[0], rows, tmp_path, dim, 0)
    _write(streams.streams[1], rows, tmp_path, dim, 100, skip={"c2"})  # c2 failed to decode in the crop
    x, y, ids = streams.load(rows, tmp_path)
    assert ids == ["c0", "c1", "c3", "c4"] and list(y) == [0, 1, 1, 0]
    assert x.shape == (4, 4, 2 * dim)
    assert (x[2, :, :dim] == 3).all() and (x[2, :, dim:] == 103).all()


def test_without_a_selection_04_to_06_evaluate_the_run_recipe(params, tmp_path):
    layout = RunLayout(tmp_path)
    recipe = run_recipe(params, layout)
    assert recipe.selection is None and recipe.model_path == layout.model_dir("hybrid") / "model.keras"
    assert recipe.streams.name == "identity+motion_crop"


def test_with_a_selection_they_evaluate_the_winner_and_choose_on_out_of_fold(params, tmp_path):
    layout = RunLayout(tmp_path)
    layout.artifacts.mkdir(parents=True)
    chosen = resolve_params([], {**params.to_dict(), "select_recipe": "cv", "cv_folds": 2})
    layout.selection.write_text(
        json.dumps(
            {
                "winner": {"name": "pooled_linear | identity"},
                "verdict": "v",
                "choices": {},
                "oof": [
                    {"clip_id": "a", "y": 0, "prob": 0.2, "group": "g"},
                    {"clip_id": "b", "y": 1, "prob": 0.7, "group": "g"},
                ],
                "carried": {
                    "overrides": {"model": "pooled_linear", "streams": ["identity"]},
                    "model_path": "artifacts/models/selected/model.keras",
                },
            }
        )
    )
    recipe = run_recipe(chosen, layout)
    assert recipe.params["model"] == "pooled_linear" and recipe.params.source("model").startswith("selection")
    assert recipe.streams.name == "identity" and recipe.model_path == layout.models / "selected" / "model.keras"
    validation = recipe.validation(fallback=None)
    assert validation.split == "val" and validation.clip_ids == ("a", "b") and list(validation.prob) == [0.2, 0.7]
