"""Notebook-01 tables built from a real audit of a small dataset with a leak and a broken file."""

import shutil

import cv2
import numpy as np

from nexara_lib.audit.manifest import build_manifest
from nexara_lib.audit.report import audit_overview, duplicates_table, leakage_table, notes_list, warnings_table


def write_clip(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    blocks = rng.integers(0, 255, (6, 8, 3)).astype(np.uint8)  # a distinct coarse pattern per clip
    for i in range(8):
        frame = cv2.resize(np.roll(blocks, i, axis=1), (64, 48), interpolation=cv2.INTER_NEAREST)
        writer.write(frame)
    writer.release()


def test_tables_show_the_leak_the_duplicate_and_the_broken_file(tmp_path):
    root = tmp_path / "rwf"
    seed = 0
    for split in ("train", "val"):
        for cls in ("Fight", "NonFight"):
            for i in range(4):
                seed += 1
                write_clip(root / split / cls / f"{cls}_{split}_{i}.avi", seed=seed)
    shutil.copy(root / "train" / "Fight" / "Fight_train_0.avi", root / "val" / "Fight" / "copied.avi")  # the leak
    (root / "train" / "NonFight" / "empty.avi").write_bytes(b"")
    manifest, unusable, summary = build_manifest([str(root)], workers=0, progress=False)

    overview = audit_overview(summary)
    assert overview["usable"] == 17 and overview["unusable"] == 1
    assert overview["clips leaking between splits"] == 2
    dups = duplicates_table(summary)
    assert set(dups["clip"].str.rsplit("/", n=1).str[-1]) == {"Fight_train_0.avi", "copied.avi"}
    assert dups["cluster spans splits"].all() and set(dups["kind"]) == {"exact"}
    leak = leakage_table(summary)
    assert set(leak["split"]) == {"train", "test"} and len(leak) == 2
    assert list(warnings_table(summary).columns) == ["clip", "warnings"]
    assert notes_list(summary).str.contains("val").any()  # RWF val reported as test, validation carved
    assert "empty" in unusable["reason"].iloc[0]
