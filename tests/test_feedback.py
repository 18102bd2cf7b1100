"""Feedback into training (issue 21, item 5): reviewed alerts and calibration footage become labelled clips of their
camera, with a groups.csv the audit keeps each camera together by; imports are idempotent and deduplicated."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from field_utils import play, write_recording

from nexara_lib.audit.discover import discover_clips
from nexara_lib.audit.groups import attach_groups
from nexara_lib.audit.splits import assign_splits
from nexara_lib.deploy.clips import write_clip
from nexara_lib.deploy.evidence import EvidenceRecorder
from nexara_lib.deploy.feedback import import_feedback
from nexara_lib.deploy.reviews import find_alerts, record_verdict
from nexara_lib.deploy.site import Site

FPS = 10.0


def picture(index: int, shade: int = 0) -> np.ndarray:
    image = np.full((48, 64, 3), 30 + shade, np.uint8)
    image[:, : 4 + index % 60] = min(250, 20 + 2 * index)  # a bar that grows frame by frame
    return image


def detections(tmp_path) -> list[dict]:
    """Three alerts with evidence: cam.avi at 4 s and 9 s, copy.avi (the very same pictures) at 4 s."""
    rec = EvidenceRecorder(tmp_path / "detect", pre_s=2.0, post_s=1.0, max_mb=50.0, cell_px=480, max_fps=30.0)
    play(rec, write_recording(tmp_path / "cam.avi", 130), alarms=[4.0, 9.0])
    play(rec, write_recording(tmp_path / "copy.avi", 130), alarms=[4.0])
    rec.close()
    return find_alerts([tmp_path / "detect"])


def site_with_footage(tmp_path) -> Site:
    footage = tmp_path / "lobby.avi"
    write_clip(footage, [picture(i, shade=40) for i in range(300)], FPS)  # 30 s of normal footage
    entry = {
        "on_threshold": 0.5,
        "cell": "full",
        "grid": {"rows": 1, "cols": 1, "margin": 0, "min_cell": 16},
        "footage": [{"source": "lobby", "path": str(footage), "live": False, "start_s": 0.0, "end_s": 30.0}],
    }
    return Site(tmp_path / "site.json", {"window_s": 3.0}, {"lobby": entry})


def test_reviews_and_footage_become_camera_clips_once(tmp_path):
    alerts = {(a["source"], a["alarm_t"]): a for a in detections(tmp_path)}
    reviews = tmp_path / "reviews.jsonl"
    record_verdict(reviews, alerts[("cam.avi", 4.0)], "fight")
    record_verdict(reviews, alerts[("copy.avi", 4.0)], "not_fight")  # the same pictures: a duplicate
    record_verdict(reviews, alerts[("cam.avi", 9.0)], "unsure")
    site, field = site_with_footage(tmp_path), tmp_path / "field"
    report = import_feedback(reviews, field, site=site, normal_clips=4)
    counts = report.counts
    # cam.avi at 4 s: confirming windows from 2.0 s to the alarm = two pieces of one window (1 s)
    assert (counts["imported_fight"], counts["imported_normal"], counts["duplicates"], counts["unsure"]) == (2, 4, 2, 1)
    groups = pd.read_csv(field / "groups.csv")
    assert list(groups.columns) == ["clip", "label", "source_group", "split"]
    assert set(groups["split"]) == {"train"}  # fed back into training, never held out
    assert sorted(groups["source_group"]) == ["cam.avi"] * 2 + ["lobby"] * 4
    assert set(groups.loc[groups["source_group"] == "lobby", "label"]) == {"non-violent"}
    assert sorted(p.parent.name for p in field.glob("*/*.mp4")) == ["fight"] * 2 + ["noFight"] * 4
    starts = sorted(float(c.rsplit("-", 1)[1].removesuffix(".mp4")) for c in groups["clip"] if "__normal-" in c)
    assert starts == [0.0, 9.0, 18.0, 27.0]  # spread evenly over the footage, one window each
    snapshot = {p: p.read_bytes() for p in field.rglob("*") if p.is_file()}
    import_feedback(reviews, tmp_path / "field2", site=site, normal_clips=4)  # deterministic: the same bytes
    assert {p.relative_to(field): b for p, b in snapshot.items()} == {
        p.relative_to(tmp_path / "field2"): p.read_bytes() for p in (tmp_path / "field2").rglob("*") if p.is_file()
    }

    again = import_feedback(reviews, field, site=site, normal_clips=4)  # the same reviews: nothing new
    assert again.counts["imported"] == 0 and again.counts["already_imported"] == 6
    assert {p: p.read_bytes() for p in field.rglob("*") if p.is_file()} == snapshot

    record_verdict(reviews, alerts[("cam.avi", 4.0)], "not_fight")  # the operator changed their mind
    changed = import_feedback(reviews, field)
    assert changed.counts["relabelled"] == 2 and not list((field / "fight").glob("*.mp4"))
    record_verdict(reviews, alerts[("cam.avi", 4.0)], "unsure")
    withdrawn = import_feedback(reviews, field)
    assert withdrawn.counts["withdrawn"] == 2
    # copy.avi's pictures were duplicates of cam.avi's; withdrawn, those pictures now come from copy.avi
    assert withdrawn.counts["imported_not_fight"] == 2
    assert sorted(pd.read_csv(field / "groups.csv")["source_group"]) == ["copy.avi"] * 2 + ["lobby"] * 4


def test_an_alert_whose_evidence_is_gone_is_counted(tmp_path):
    alerts = detections(tmp_path)
    reviews = tmp_path / "reviews.jsonl"
    record_verdict(reviews, alerts[0], "fight")
    (tmp_path / "detect" / "evidence" / alerts[0]["alert_id"] / "clip.mp4").unlink()
    report = import_feedback(reviews, tmp_path / "field")
    assert report.counts["missing_evidence"] == 1 and "evidence is gone" in report.notes[0]
    with pytest.raises(ValueError, match="reviews file .* does not exist"):
        import_feedback(tmp_path / "nope.jsonl", tmp_path / "field")


def _dataset(root, clips_per_class: int = 10) -> None:
    for label, folder in ((1, "fight"), (0, "noFight")):
        for k in range(clips_per_class):
            frames = [picture(i + 7 * k, shade=label * 60 + k) for i in range(12)]
            write_clip(root / folder / f"{folder}_{k:02d}.avi", frames, FPS)


def test_the_audit_keeps_each_cameras_field_clips_in_one_split(tmp_path):
    alerts = {(a["source"], a["alarm_t"]): a for a in detections(tmp_path)}
    reviews = tmp_path / "reviews.jsonl"
    record_verdict(reviews, alerts[("cam.avi", 4.0)], "fight")
    record_verdict(reviews, alerts[("cam.avi", 9.0)], "not_fight")
    field = tmp_path / "field"
    import_feedback(reviews, field, site=site_with_footage(tmp_path), normal_clips=6)
    dataset = tmp_path / "dataset"
    _dataset(dataset)
    clips = discover_clips([dataset, field])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the field folder's own CSV describes it whole; the dataset needs none
        grouped = attach_groups(clips, [field / "groups.csv"])
    in_field = grouped["source"] == "field"
    assert set(grouped.loc[in_field, "group"]) == {"csv:cam.avi", "csv:lobby"}
    assert grouped.loc[~in_field, "group"].str.startswith("sha1:").all()  # by duplicates, as without a CSV
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a field folder pinned to train lacks val and test on purpose: no warning
        split = assign_splits(grouped, seed=3)
    # reviewed clips are fed back into training: pinned to train by the field groups.csv, whatever the seed
    assert (split.loc[in_field, "split"] == "train").all() and (split.loc[in_field, "split_origin"] == "pinned").all()
    assert set(split.loc[~in_field, "split"]) == {"train", "val", "test"}  # the dataset is split as before

    report = grouped.attrs["groups_report"]
    assert report["matched"] == int(in_field.sum()) and report["not_in_csv"] == []
    # a CSV outside every root still describes every root: then the dataset's clips missing from it are named
    outside = tmp_path / "all-groups.csv"
    pd.read_csv(field / "groups.csv").assign(clip=lambda t: "field/" + t["clip"]).to_csv(outside, index=False)
    with pytest.warns(UserWarning, match="20 of .* clips are not in groups CSV"):
        attach_groups(clips, outside)
    with pytest.raises(ValueError, match="both list clip"):
        attach_groups(clips, [field / "groups.csv", outside, field / "groups.csv"])


def test_import_log_records_where_each_clip_came_from(tmp_path):
    alerts = detections(tmp_path)
    reviews = tmp_path / "reviews.jsonl"
    record_verdict(reviews, alerts[0], "fight")
    import_feedback(reviews, tmp_path / "field")
    imports = pd.read_csv(tmp_path / "field" / "imports.csv", dtype=str)
    assert list(imports.columns) == ["clip", "label", "camera", "origin", "sha1"]
    assert imports["origin"].str.startswith(f"alert:{alerts[0]['alert_id']}:").all()
    info = json.loads((tmp_path / "detect" / "evidence" / alerts[0]["alert_id"] / "alert.json").read_text())
    assert set(imports["camera"]) == {info["camera"]}


def test_a_pinned_split_keeps_a_field_folder_of_many_cameras_in_train():
    """Ten cameras of field clips: unpinned, the grouped splitter sends some to val and test; pinned, none."""
    rows = [
        {"source": "field", "rel_path": f"fight/cam{c}__{k}.mp4", "label": k % 2, "group": f"csv:cam{c}"}
        for c in range(10)
        for k in range(4)
    ]
    rows += [{"source": "data", "rel_path": f"x/{i}.mp4", "label": i % 2, "group": f"g{i}"} for i in range(40)]
    clips = pd.DataFrame(rows)
    field = clips["source"] == "field"
    assert set(assign_splits(clips, seed=0).loc[field, "split"]) == {"train", "val", "test"}
    pinned = assign_splits(clips.assign(pinned_split=["train" if f else "" for f in field]), seed=0)
    assert (pinned.loc[field, "split"] == "train").all()
    assert set(pinned.loc[~field, "split"]) == {"train", "val", "test"}
