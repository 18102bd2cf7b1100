"""The notebook-01 clip browser on real tiny videos, driven like a user would (changing widget values)."""

import cv2
import numpy as np
import pandas as pd
import pytest

from nexara_lib.stages.widgets import clip_browser, filter_clips


def write_clip(path, value, n=6):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 32))
    for i in range(n):
        frame = np.full((32, 48, 3), value, np.uint8)
        frame[:, i * 6 : (i * 6) + 6] = 255  # a bar that moves: each frame differs
        writer.write(frame)
    writer.release()
    return str(path)


@pytest.fixture
def manifest(tmp_path):
    return pd.DataFrame(
        [
            {
                "clip_id": "a",
                "path": write_clip(tmp_path / "a.avi", 30),
                "class_name": "violent",
                "split": "train",
                "frames": 6,
                "status": "ok",
            },
            {
                "clip_id": "b<script>",
                "path": write_clip(tmp_path / "b <script>.avi", 120),
                "class_name": "non-violent",
                "split": "test",
                "frames": 6,
                "status": "ok",
            },
            {
                "clip_id": "c",
                "path": str(tmp_path / "missing.avi"),
                "class_name": "violent",
                "split": "test",
                "frames": 6,
                "status": "ok",
            },
        ]
    )


def test_filter_clips(manifest):
    assert list(filter_clips(manifest, "violent", "test")["clip_id"]) == ["c"]
    assert len(filter_clips(manifest)) == 3


def test_browser_steps_through_frames_and_filters(manifest):
    box = clip_browser(manifest, frames_per_clip=4, size=32)
    (class_pick, split_pick), clip_pick, slider, image, caption = box.children[0].children, *box.children[1:]
    assert clip_pick.value == "a" and bytes(image.value).startswith(b"\x89PNG")
    first = image.value
    slider.value = 3
    assert bytes(image.value) != bytes(first) and "frame 5 of 6" in caption.value

    split_pick.value = "test"
    class_pick.value = "non-violent"
    assert list(clip_pick.options) == ["b<script>"]
    assert "<script>" not in caption.value and "&lt;script&gt;" in caption.value

    class_pick.value = "violent"  # only the missing file is left: a readable message, no exception
    assert clip_pick.value == "c" and bytes(image.value) == b"" and "cannot show" in caption.value

    class_pick.value = "non-violent"
    split_pick.value = "train"  # no non-violent training clip: nothing matches
    assert clip_pick.value is None and "no usable clip" in caption.value
