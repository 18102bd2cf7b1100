"""`deploy.detect.detect`: an export folder + sources -> events, windows, summary, per-source timelines and
annotated videos; an export that does not match the run is refused before anything runs."""

import json

import pandas as pd
import pytest
from test_detector import T, write_clip

from nexara_lib.deploy.detect import detect, expected_from_run
from nexara_lib.deploy.export import ExportError, export_head
from nexara_lib.features.stream import FeatureStream
from nexara_lib.training.model_files import save_model_atomic
from nexara_lib.training.models import create_sequence_model, model_defaults

STREAM = FeatureStream("flow", "none", T)


def write_tiny_export(folder, export_dir, t: int = T, run_name: str = "t"):
    """Export a tiny untrained pooled_mlp on the flow stream (T = ``t``) from ``folder/model.keras`` into
    ``export_dir``, with the facts ``nexara detect`` needs (window 1 s, on-threshold 0.5)."""
    import keras

    stream = FeatureStream("flow", "none", t)
    keras.utils.set_random_seed(0)
    model = create_sequence_model("pooled_mlp", (t, stream.feature_dim), **model_defaults("pooled_mlp"))
    save_model_atomic(model, folder / "model.keras")
    facts = {
        "run": {"name": run_name, "model": "pooled_mlp", "stream_set": "identity"},
        "streams": [{**stream.describe(), "item": "identity"}],
        "window_s": 1.0,
        "threshold": {
            "on": 0.5,
            "false_alarm_rate": 0.05,
            "validation_fpr": 0.0,
            "validation_recall": 1.0,
            "chosen_on": "validation",
        },
    }
    export_head(folder / "model.keras", export_dir, variants=("float32",), facts=facts)
    return export_dir


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    return write_tiny_export(folder, folder / "export")


PARAMS = {"detect_head_variant": "float32", "frames_per_clip": T, "streams": ["identity"]}


def test_detect_writes_events_windows_summary_timelines_and_annotated_videos(tmp_path, export_dir):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "a.mp4", n=60)
    write_clip(clips / "b.mp4", n=50, seed=3)
    result = detect(
        [str(clips)], export_dir, PARAMS, tmp_path / "out", annotate=True, expected=expected_from_run(PARAMS, [STREAM])
    )
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert [s["source"] for s in summary["sources"]] == ["a.mp4", "b.mp4"]
    assert summary["settings"]["window_s"] == 1.0 and summary["settings"]["variant"] == "float32"
    (used,) = summary["settings"]["windows_used"]  # the window actually used, aligned by default
    assert summary["settings"]["align_windows"] and used["aligned"] and used["sources"] == ["a.mp4", "b.mp4"]
    assert used["window_frames"] == 21 and used["window_s"] == 1.05 and used["stride_frames"] == 11  # T = 6, 20 fps
    assert used["positions_shared_with_earlier_windows"] == [3] and summary["sources"][0]["window"]["aligned"]
    windows = pd.read_csv(out / "windows.csv")
    assert len(windows) == summary["windows"] == len(result.windows) > 0
    assert ((windows["end_t"] - windows["start_t"]).round(6) == 1.05).all()
    assert set(windows["state"]) == {"scored"} and windows["score"].between(0, 1).all()
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["source"] for e in events if e["type"] == "status"] == ["a.mp4", "b.mp4"]
    assert {p.name for p in out.glob("*.timeline.png")} == {"a.timeline.png", "b.timeline.png"}
    assert {p.name for p in out.glob("*.annotated.mp4")} == {"a.annotated.mp4", "b.annotated.mp4"}


def test_unaligned_windows_are_exactly_the_asked_length(tmp_path, export_dir):
    clip = write_clip(tmp_path / "a.mp4", n=40)
    result = detect([str(clip)], export_dir, {**PARAMS, "detect_align_windows": False}, tmp_path / "out", figure=False)
    (used,) = result.summary["settings"]["windows_used"]
    assert not result.summary["settings"]["align_windows"] and not used["aligned"]
    assert (used["window_frames"], used["stride_frames"], used["window_s"]) == (20, 10, 1.0)
    assert [w.start_t for w in result.window_scores] == pytest.approx([0.0, 0.5, 1.0])


def test_an_export_that_does_not_match_the_run_is_refused_before_anything_runs(tmp_path, export_dir):
    clip = write_clip(tmp_path / "a.mp4")
    other = FeatureStream("flow", "none", T + 2)
    with pytest.raises(ExportError, match="T"):
        detect(
            [str(clip)],
            export_dir,
            PARAMS,
            tmp_path / "out",
            expected=expected_from_run({**PARAMS, "frames_per_clip": T + 2}, [other]),
        )
    assert not (tmp_path / "out").exists()


def test_a_missing_source_is_a_clear_error(tmp_path, export_dir):
    with pytest.raises(ValueError, match="does not exist"):
        detect([str(tmp_path / "nowhere.mp4")], export_dir, PARAMS, tmp_path / "out")
