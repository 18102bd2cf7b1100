"""Stage glue: data roots, feature streams of a run, split loading."""

import os

import numpy as np
import pandas as pd
import pytest

from nexara_lib.features.cache import clip_cache_name
from nexara_lib.features.cache_entries import write_entry
from nexara_lib.features.stream import FeatureStream
from nexara_lib.layout import RunLayout
from nexara_lib.run.params import resolve_params
from nexara_lib.stages.data import load_splits, prepare_data_dirs, run_streams


@pytest.fixture
def params(tmp_path):
    return resolve_params(
        [],
        {
            "synthetic_clips": 8,
            "output_root": str(tmp_path),
            "backbone": "flow",
            "backbone_weights": "none",
            "ensemble_members": [
                {"model": "hybrid", "seed": 1},
                {"model": "bigru", "seed": 2, "backbone": "mobilenet_v1_tflite"},
                {"model": "hybrid", "seed": 3, "backbone": "flow"},
            ],
        },
    )


def test_feature_streams_are_the_run_backbone_plus_distinct_member_streams(params):
    T = params["frames_per_clip"]
    assert run_streams(params) == [
        FeatureStream("flow", "none", T),
        FeatureStream("mobilenet_v1_tflite", "imagenet", T),
    ]
    assert FeatureStream.for_member({"model": "hybrid"}, params) == FeatureStream("flow", "none", T)
    member = FeatureStream.for_member({"model": "hybrid", "backbone": "vgg19", "backbone_weights": "w.h5"}, params)
    assert (member.backbone, member.weights, member.frames_per_clip) == ("vgg19", "w.h5", T)


def test_synthetic_data_is_generated_once_and_reused(params, tmp_path):
    first = prepare_data_dirs(params)
    marker = next(iter(first)) + "/.complete.json"
    stamp = os.stat(marker).st_mtime_ns
    assert prepare_data_dirs(params) == first
    assert os.stat(marker).st_mtime_ns == stamp
    assert first[0].startswith(str(tmp_path / "_synthetic"))


def test_load_splits_reads_each_split_and_names_an_empty_one(tmp_path):
    rows = pd.DataFrame(
        [
            {"clip_id": f"c{i}", "path": f"/x/{i}.avi", "label": i % 2, "split": ["train", "val"][i // 4]}
            for i in range(8)
        ]
    )
    layout = RunLayout(tmp_path)
    stream = FeatureStream("flow", "none", 3)
    stream.cache_dir(layout.features).mkdir(parents=True)
    for _, row in rows.iterrows():
        write_entry(
            stream.cache_dir(layout.features) / clip_cache_name(row), np.full((3, 2), row["label"], dtype=np.float16)
        )
    splits = load_splits(rows, stream, layout, ("train", "val"))
    assert splits["train"].x.shape == (4, 3, 2) and list(splits["val"].y) == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="no usable clips in split 'test'"):
        load_splits(rows, stream, layout)
