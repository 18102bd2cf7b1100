"""Dataset discovery, grouping, probing, splits and the manifest, on real tiny videos."""

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from nexara_lib.audit.discover import SPLITS, discover_clips, make_clip_id
from nexara_lib.audit.figures import class_balance_figure, duration_figure, frame_grid_figure
from nexara_lib.audit.groups import attach_groups
from nexara_lib.audit.links import file_sha1
from nexara_lib.audit.manifest import MANIFEST_COLUMNS, build_manifest, write_audit
from nexara_lib.audit.probe_pool import probe_clips
from nexara_lib.audit.splits import assign_splits

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "surv-fight-dev"
_counter = iter(range(1, 1_000_000))


def write_clip(path, n_frames=4, size=(32, 24)):
    """A tiny real MJPG clip; every call draws different pixels, so files never hash alike."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, size)
    rng = np.random.default_rng(next(_counter))
    for _ in range(n_frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def make_tree(root, layout):
    """layout: {relative path: n_frames}; '.txt' entries are plain text files."""
    for rel, n in layout.items():
        target = Path(root) / rel
        if target.suffix == ".txt":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("not a clip")
        else:
            write_clip(target, n)
    return Path(root)


def rwf_tree(root, train_per_class=6, val_per_class=2):
    layout = {f"train/{c}/{c}_{i}.avi": 3 for c in ("Fight", "NonFight") for i in range(train_per_class)}
    layout |= {f"val/{c}/{c}_{i}.avi": 3 for c in ("Fight", "NonFight") for i in range(val_per_class)}
    layout["train/Fight/readme.txt"] = 0
    root = make_tree(root, layout)
    (root / "train" / "NonFight" / "._NonFight_0.avi").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork
    return root


# --------------------------------------------------------------------------- discovery


def test_discover_rwf2000_uses_val_as_test(tmp_path):
    clips = discover_clips([rwf_tree(tmp_path / "RWF-2000")])
    assert len(clips) == 16
    assert clips.attrs["layouts"] == {"RWF-2000": "rwf-2000"}
    assert clips.attrs["skipped_non_video"] == {"RWF-2000": 2}
    val = clips[clips["dataset_split"] == "val"]
    assert len(val) == 4 and set(val["split"]) == {"test"}
    assert set(clips.loc[clips["dataset_split"] == "train", "split"]) == {"train"}
    assert any("val is used as the test split" in n and "carved from train" in n for n in clips.attrs["notes"])
    fight = clips[clips["rel_path"].str.contains("/Fight/")]
    assert set(fight["label"]) == {1} and set(fight["class_name"]) == {"violent"}
    assert set(clips.loc[clips["rel_path"].str.contains("/NonFight/"), "label"]) == {0}
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in clips["path"])
    assert set(clips["source"]) == {"RWF-2000"}


def test_discover_generic_split_layout_with_split_synonyms(tmp_path):
    layout = {
        f"{split}/{cls}/c{i}.mp4": 3
        for split in ("training", "validation", "testing")
        for cls in ("Violence", "non_violence")
        for i in range(2)
    }
    clips = discover_clips(make_tree(tmp_path / "ds", layout))
    assert clips.attrs["layouts"] == {"ds": "split/class"}
    assert clips.groupby(["split", "label"]).size().to_dict() == {
        (s, lab): 2 for s in ("test", "train", "val") for lab in (0, 1)
    }
    assert set(clips["dataset_split"]) == {"training", "validation", "testing"}


@pytest.mark.parametrize(
    "violent, non_violent",
    [
        ("fight", "noFight"),
        ("FIGHT", "NonFight"),
        ("Violence", "NonViolence"),
        ("violent", "non_violent"),
        ("Fight", "non_fight"),
        ("violence", "non_violence"),
        ("Violent", "Nonviolent"),
        ("fight", "Normal"),
        ("Violent", "Non-Violent"),
        ("fights", "noFights"),
        ("Fights", "no_fight"),
        ("violence", "No-Violence"),
    ],
)
def test_class_folder_synonyms(tmp_path, violent, non_violent):
    root = make_tree(tmp_path / "d", {f"{violent}/a.avi": 2, f"{non_violent}/b.avi": 2})
    clips = discover_clips([root])
    assert dict(zip(clips["rel_path"], clips["label"], strict=True)) == {
        f"{violent}/a.avi": 1,
        f"{non_violent}/b.avi": 0,
    }
    assert set(clips["split"]) == {""}


def test_scvd_style_train_test_layout_gets_validation_carved_from_train(tmp_path):
    layout = {
        f"{split}/{cls}/{cls.lower()}_{i}.avi": 3
        for split, n in (("Train", 6), ("Test", 2))
        for cls in ("Normal", "Violence")
        for i in range(n)
    }
    layout["Train/Weaponized/w_0.avi"] = 3  # SCVD's third class: not a binary label, so left out
    clips = discover_clips([make_tree(tmp_path / "SCVD_converted", layout)])
    assert clips.attrs["layouts"] == {"SCVD_converted": "split/class"} and len(clips) == 16
    assert any("Weaponized" in note for note in clips.attrs["notes"])
    result = assign_splits(attach_groups(clips), seed=0)
    assert (result.loc[result["dataset_split"] == "Test", "split"] == "test").all()
    val = result[result["split"] == "val"]
    assert set(val["dataset_split"]) == {"Train"} and set(val["split_origin"]) == {"carved"}
    assert set(val["label"]) == {0, 1}


def test_discover_real_life_violence_situations(tmp_path):
    root = make_tree(
        tmp_path / "Real Life Violence Dataset",
        {"Violence/V_1.mp4": 2, "Violence/V_2.mp4": 2, "NonViolence/NV_1.mp4": 2},
    )
    clips = discover_clips([root])
    assert clips.attrs["layouts"] == {"Real Life Violence Dataset": "real-life-violence-situations"}
    assert dict(zip(clips["rel_path"], clips["label"], strict=True)) == {
        "NonViolence/NV_1.mp4": 0,
        "Violence/V_1.mp4": 1,
        "Violence/V_2.mp4": 1,
    }


def test_discover_layout_inside_a_wrapper_folder(tmp_path):
    root = make_tree(tmp_path / "archive", {"unzipped/Violence/V_1.mp4": 2, "unzipped/NonViolence/NV_1.mp4": 2})
    clips = discover_clips([root])
    assert sorted(clips["rel_path"]) == ["unzipped/NonViolence/NV_1.mp4", "unzipped/Violence/V_1.mp4"]


def test_discover_hockey_flat_folder(tmp_path):
    root = make_tree(
        tmp_path / "HockeyFights",
        {"fi1_xvid.avi": 2, "newfi2.avi": 2, "no3_xvid.avi": 2, "newno4.avi": 2, "other.avi": 2, "notes.txt": 0},
    )
    clips = discover_clips([root])
    assert clips.attrs["layouts"] == {"HockeyFights": "hockey/movies-flat"}
    assert dict(zip(clips["rel_path"], clips["label"], strict=True)) == {
        "fi1_xvid.avi": 1,
        "newfi2.avi": 1,
        "newno4.avi": 0,
        "no3_xvid.avi": 0,
    }
    assert clips.attrs["skipped_non_video"] == {"HockeyFights": 1}
    assert any("other.avi" in note for note in clips.attrs["notes"])


def test_unknown_layout_lists_what_was_found(tmp_path):
    root = make_tree(tmp_path / "mystery", {"clips/a.avi": 2, "labels.txt": 0, "extra/b.avi": 2})
    with pytest.raises(ValueError) as err:
        discover_clips([root])
    message = str(err.value)
    for expected in ("mystery", "clips/", "extra/", "labels.txt", "RWF-2000", "Hockey", "<class>/*"):
        assert expected in message


def test_bad_roots_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        discover_clips([tmp_path / "nowhere"])
    root = make_tree(tmp_path / "d", {"fight/a.avi": 2, "nofight/b.avi": 2})
    with pytest.raises(ValueError, match="same folder twice"):
        discover_clips([root, root])
    split_without_classes = make_tree(tmp_path / "s", {"train/stuff/a.avi": 2})
    with pytest.raises(ValueError, match="holds no class folders"):
        discover_clips([split_without_classes])


def test_several_roots_get_distinct_sources(tmp_path):
    first = make_tree(tmp_path / "a" / "data", {"fight/x.avi": 2, "nofight/y.avi": 2})
    second = make_tree(tmp_path / "b" / "data", {"fi1.avi": 2, "no1.avi": 2})
    clips = discover_clips([first, second])
    assert clips["source"].nunique() == 2 and len(clips) == 4
    assert set(clips.attrs["layouts"].values()) == {"class", "hockey/movies-flat"}


def test_symlink_loops_are_not_followed_forever(tmp_path):
    root = make_tree(tmp_path / "d", {"fight/a.avi": 2, "nofight/b.avi": 2})
    os.symlink(root / "fight", root / "fight" / "loop")
    clips = discover_clips([root])
    assert sorted(clips["rel_path"]) == ["fight/a.avi", "nofight/b.avi"]


def test_max_clips_is_stratified_and_deterministic(tmp_path):
    root = make_tree(
        tmp_path / "d", {**{f"fight/f{i}.avi": 1 for i in range(12)}, **{f"nofight/n{i}.avi": 1 for i in range(6)}}
    )
    small = discover_clips([root], max_clips=6, seed=3)
    assert small["label"].value_counts().to_dict() == {1: 4, 0: 2}
    again = discover_clips([root], max_clips=6, seed=3)
    pd.testing.assert_frame_equal(small, again)
    assert len(discover_clips([root], max_clips=100)) == 18


# --------------------------------------------------------------------------- splits


def grouped_table(seed=0, n_groups=60):
    """Clips in groups of 1-8, both classes, with two files that are byte-identical across groups."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for k in range(int(rng.integers(1, 9))):
            rows.append(
                {
                    "path": f"/d/g{g}_{k}.avi",
                    "rel_path": f"g{g}_{k}.avi",
                    "source": "d",
                    "label": int(rng.random() < 0.4),
                    "group": f"csv:g{g}",
                    "sha1": f"{g:04d}{k:04d}",
                }
            )
    table = pd.DataFrame(rows)
    table.loc[len(table) - 1, "sha1"] = table.loc[0, "sha1"]  # a duplicate file in another group
    return table


def test_grouped_splits_are_grouped_stratified_and_deterministic():
    table = grouped_table()
    result = assign_splits(table, (0.7, 0.15, 0.15), seed=5)
    assert result.groupby("group")["split"].nunique().max() == 1
    assert result.groupby("sha1")["split"].nunique().max() == 1  # identical bytes follow each other
    assert not result["leakage"].any() and set(result["split_origin"]) == {"generated"}
    for label in (0, 1):
        share = result[result["label"] == label]["split"].value_counts(normalize=True)
        assert share["train"] == pytest.approx(0.70, abs=0.06)
        assert share["val"] == pytest.approx(0.15, abs=0.06) and share["test"] == pytest.approx(0.15, abs=0.06)
    pd.testing.assert_frame_equal(result, assign_splits(table, (0.7, 0.15, 0.15), seed=5))
    shuffled = assign_splits(table.sample(frac=1, random_state=1), (0.7, 0.15, 0.15), seed=5)
    assert dict(zip(shuffled["path"], shuffled["split"], strict=True)) == dict(
        zip(result["path"], result["split"], strict=True)
    )


def test_few_groups_still_fill_every_split_or_fail_clearly():
    three = pd.DataFrame({"label": [1, 1, 0, 0, 1, 0], "group": ["a", "a", "b", "b", "c", "c"], "path": list("uvwxyz")})
    result = assign_splits(three, seed=0)
    assert set(result["split"]) == {"train", "val", "test"}
    assert result.groupby("group")["split"].nunique().max() == 1
    two = three.assign(group=["a", "a", "a", "b", "b", "b"])
    with pytest.raises(ValueError, match="only 2 groups"):
        assign_splits(two)


def test_assign_splits_input_errors():
    table = grouped_table(n_groups=10)
    with pytest.raises(ValueError, match="summing to 1"):
        assign_splits(table, (0.8, 0.15, 0.15))
    with pytest.raises(ValueError, match="attach_groups"):
        assign_splits(table.drop(columns="group"))
    with pytest.raises(ValueError, match="no train split"):
        assign_splits(table.assign(split="test"))
    with pytest.raises(ValueError, match="unknown split names"):
        assign_splits(table.assign(split="holdout"))


def test_rwf_val_becomes_test_and_validation_is_carved_from_train(tmp_path):
    clips = attach_groups(discover_clips([rwf_tree(tmp_path / "rwf", train_per_class=10)]))
    result = assign_splits(clips, (0.7, 0.15, 0.15), seed=0)
    assert set(result.loc[result["dataset_split"] == "val", "split"]) == {"test"}
    from_train = result[result["dataset_split"] == "train"]
    assert set(from_train["split"]) == {"train", "val"}
    val = result[result["split"] == "val"]
    assert set(val["split_origin"]) == {"carved"} and set(val["label"]) == {0, 1}
    # val takes 0.15 / (0.70 + 0.15) of each class of the train folder: 2 of 10.
    assert val["label"].value_counts().to_dict() == {0: 2, 1: 2}
    assert set(result.loc[result["split"].isin(["train", "test"]), "split_origin"]) == {"dataset"}


def test_duplicate_across_dataset_splits_is_flagged_as_leakage(tmp_path):
    root = rwf_tree(tmp_path / "rwf")
    shutil.copy(root / "train/Fight/Fight_0.avi", root / "val/Fight/copy_of_train.avi")
    clips = attach_groups(discover_clips([root]))
    with pytest.warns(UserWarning, match="leakage"):
        result = assign_splits(clips)
    leaked = result[result["leakage"]]
    assert sorted(leaked["rel_path"]) == ["train/Fight/Fight_0.avi", "val/Fight/copy_of_train.avi"]
    assert dict(zip(leaked["rel_path"], leaked["split"], strict=True))["val/Fight/copy_of_train.avi"] == "test"
    assert leaked["group"].nunique() == 1


@pytest.mark.realdata
def test_groups_csv_on_real_data_keeps_each_source_in_one_split():
    if not (REAL_DATA / "groups.csv").is_file():
        pytest.skip(f"real data not found at {REAL_DATA}")
    clips = discover_clips([REAL_DATA])
    assert clips.attrs["layouts"] == {"surv-fight-dev": "class"}
    assert clips["label"].value_counts().to_dict() == {0: 90, 1: 87}
    grouped = attach_groups(clips, REAL_DATA / "groups.csv")
    assert grouped.attrs["groups_report"]["matched"] == 177
    result = assign_splits(grouped, (0.7, 0.15, 0.15), seed=42)
    truth = pd.read_csv(REAL_DATA / "groups.csv").set_index("clip")["source_group"]
    result["source_group"] = result["rel_path"].map(truth)
    assert result["source_group"].notna().all()
    assert result.groupby("source_group")["split"].nunique().max() == 1
    assert result.groupby("split")["label"].nunique().to_dict() == {"train": 2, "val": 2, "test": 2}
    assert result["split"].value_counts(normalize=True)["train"] == pytest.approx(0.7, abs=0.08)


def test_groups_csv_missing_clip_gets_own_group_with_warning(tmp_path):
    root = make_tree(tmp_path / "d", {"fight/fi1.avi": 2, "fight/fi2.avi": 2, "noFight/no1.avi": 2})
    csv = tmp_path / "groups.csv"
    csv.write_text("clip,label,source_group\nfight/fi1.avi,fight,camA\nnoFight/no1.avi,1,camA\n")
    with pytest.warns(UserWarning) as record:
        grouped = attach_groups(discover_clips([root]), csv)
    messages = " ".join(str(w.message) for w in record)
    assert "not in groups CSV" in messages and "fight/fi2.avi" in messages
    assert "different label" in messages and "noFight/no1.avi" in messages
    groups = dict(zip(grouped["rel_path"], grouped["group"], strict=True))
    assert groups["fight/fi1.avi"] == groups["noFight/no1.avi"] == "csv:camA"
    assert groups["fight/fi2.avi"] not in (groups["fight/fi1.avi"],)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,group\na,b\n")
    with pytest.raises(ValueError, match="lacks columns"):
        attach_groups(discover_clips([root]), bad)


# --------------------------------------------------------------------------- probing and manifest


@pytest.mark.realdata
def test_probe_clips_on_real_clips_in_worker_processes():
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA}")
    clips = discover_clips([REAL_DATA], max_clips=4, seed=1)
    probed = probe_clips(clips, workers=2, progress=False)
    assert (probed["status"] == "ok").all() and (probed["frames"] > 10).all()
    assert (probed["sha1"].str.len() == 40).all() and probed["sha1"].nunique() == 4
    assert probed["last_frame_ok"].all() and (probed["phash"].str.count(":") == 3).all()
    assert probed["sha1"].iloc[0] == file_sha1(probed["path"].iloc[0])
    assert probed.attrs["probe_seconds"] > 0


def test_build_manifest_reports_unusable_files_and_keeps_good_ones(tmp_path):
    layout = {f"{c}/{p}{i}.avi": 4 for c, p in (("fight", "fi"), ("noFight", "no")) for i in range(6)}
    root = make_tree(tmp_path / "data", layout)
    (root / "fight" / "empty.mp4").write_bytes(b"")
    (root / "noFight" / "text.avi").write_text("I am a text file with a video name\n" * 10)
    write_clip(root / "fight" / "single.avi", n_frames=1)
    shutil.copy(root / "fight" / "fi0.avi", root / "fight" / "fi0_copy.avi")
    (root / "fight" / "notes.txt").write_text("not a clip")

    manifest, unusable, summary = build_manifest([root], seed=0, workers=1, progress=False)
    reasons = dict(zip(unusable["rel_path"], unusable["reason"], strict=True))
    assert set(reasons) == {"fight/empty.mp4", "noFight/text.avi", "fight/single.avi"}
    assert reasons["fight/empty.mp4"] == "file is empty (0 bytes)"
    assert reasons["noFight/text.avi"].startswith("not a video: the file is a text file with a .avi suffix")
    assert reasons["fight/single.avi"].startswith("only 1 decodable frame")
    assert len(manifest) == 13 and (manifest["status"] == "ok").all()
    assert manifest["first_frame_ok"].all() and manifest["last_frame_ok"].all()
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert manifest["clip_id"].is_unique and (manifest["frames"] == 4).all()
    dup = manifest[manifest["duplicate"]]
    assert sorted(dup["rel_path"]) == ["fight/fi0.avi", "fight/fi0_copy.avi"] and dup["split"].nunique() == 1
    assert set(dup["duplicate_kind"]) == {"exact"} and sorted(dup["duplicate_of"]) == ["", "data/fight/fi0.avi"]
    assert summary["clips_found"] == 16 and summary["clips_unusable"] == 3
    assert summary["non_video_files_skipped"] == {"data": 1}
    assert summary["duplicates"]["sets"] == 1 and summary["leakage"]["clips"] == 0
    assert summary["duplicates"]["list"][0]["clips"][0]["split"] in SPLITS
    assert sum(summary["counts_by_split"]["train"].values()) >= 7
    assert summary["imbalance_ratio"] == pytest.approx(7 / 6)

    paths = write_audit(manifest, unusable, summary, tmp_path / "artifacts")
    assert sorted(os.listdir(tmp_path / "artifacts")) == ["audit.json", "manifest.csv", "unusable.csv"]
    back = pd.read_csv(paths["manifest"], keep_default_na=False)
    assert list(back["clip_id"]) == list(manifest["clip_id"])
    assert json.loads(Path(paths["audit"]).read_text())["clips_usable"] == 13

    for figure in (
        class_balance_figure(manifest),
        duration_figure(manifest),
        frame_grid_figure(manifest, per_class=2, frames=3, seed=0),
    ):
        assert len(figure.axes) >= 2
        figure.savefig(tmp_path / "figure.png")
    grid = frame_grid_figure(manifest, per_class=2, frames=3, seed=0)
    assert len(grid.axes) == 12 and all(ax.images for ax in grid.axes)


def test_build_manifest_with_nothing_usable_is_an_error(tmp_path):
    root = tmp_path / "d"
    (root / "fight").mkdir(parents=True)
    (root / "nofight").mkdir()
    (root / "fight" / "a.mp4").write_bytes(b"")
    (root / "nofight" / "b.avi").write_text("text")
    with pytest.raises(ValueError, match="none of the 2 clips .* is usable"):
        build_manifest([root], workers=1, progress=False)


def test_clip_id_is_stable_and_filesystem_safe():
    first = make_clip_id("my data", "train/Fight/a b$c.avi")
    assert first == make_clip_id("my data", "train/Fight/a b$c.avi")
    assert "/" not in first and " " not in first and "$" not in first
    assert first != make_clip_id("my data", "train/Fight/a b_c.avi")
