"""The field loop end to end on the smoke run (issue 21): calibrate a camera on calm footage, detect with its site
file (alerts keep their evidence), review alerts with the notebook's own function, import the verdicts and the
calm footage as training clips, and (slow) rerun 01-03 on the dataset with the field folder layered on."""

import json
from pathlib import Path

import pandas as pd
import pytest

from nexara_lib.deploy.montage import assemble_long_video
from nexara_lib.layout import RunLayout
from nexara_lib.run.cli import main
from nexara_lib.run.params import resolve_params
from nexara_lib.stages.review import run_alerts, save_verdict
from nexara_lib.video.synthetic import generate_synthetic_dataset

PARAMS = Path(__file__).resolve().parents[1] / "params"
# Smoke-sized calibration: the smoke model is tiny and the footage a minute long, so the target rate is high (30%
# of normal windows) and two windows above the threshold are enough; the rules are those of a real site.
CALIBRATION = ["calibrate_min_minutes=0.5", "calibrate_tail_windows=2", "detect_false_alarm_rate=0.3"]


def footage(out: Path) -> tuple[Path, Path]:
    """A site's own footage, never seen in training (synthetic clips of another seed): calm footage (its non-violent
    clips, twice: about 50 s) and a video of calm stretches and fights."""
    clips = generate_synthetic_dataset(out / "site-clips", 16, seed=7, progress=False).sort_values("path")
    calm = clips[clips["label"] == 0]["path"].tolist()
    fights = clips[clips["label"] == 1]["path"].tolist()
    calm_video, fight_video = out / "lobby-normal.mp4", out / "lobby-tonight.mp4"
    assemble_long_video([(p, 0) for p in calm * 2], calm_video, fps=20, size=(128, 96))
    mixed = [(p, 0) for p in calm[:4]] + [(p, 1) for p in fights[:6]] + [(p, 0) for p in calm[4:8]]
    assemble_long_video(mixed, fight_video, fps=20, size=(128, 96))
    return calm_video, fight_video


def run_field_loop(run_dir: Path, tmp_path: Path, capsys) -> Path:
    """calibrate -> detect with the site file -> review -> feedback; returns the field folder."""
    calm, tonight = footage(tmp_path)
    sets = [arg for item in CALIBRATION for arg in ("--set", item)]

    # too little footage: the message names the minutes needed
    assert main(["calibrate", f"lobby={calm}", "--run", str(run_dir), "--minutes", "0.1", *sets]) == 2
    assert "needs at least 0.5 minutes of normal footage" in capsys.readouterr().err

    assert main(["calibrate", f"lobby={calm}", "--run", str(run_dir), *sets]) == 0
    out = capsys.readouterr().out
    site_file = run_dir / "artifacts" / "export" / "site.json"
    site = json.loads(site_file.read_text())
    lobby = site["cameras"]["lobby"]
    assert "lobby: on-threshold" in out and lobby["windows"] >= 20 and lobby["share_above"] <= 0.3
    assert lobby["footage"][0]["path"] == str(calm.resolve()) and (run_dir / "calibrate" / "windows.csv").is_file()
    first = site_file.read_bytes()
    assert main(["calibrate", f"lobby={calm}", "--run", str(run_dir), *sets]) == 0
    assert site_file.read_bytes() == first  # same footage, same site file
    capsys.readouterr()

    confirm = ["--set", "detect_confirm_k=1", "--set", "detect_confirm_n=1", "--set", "detect_cooldown_s=1"]
    assert main(["detect", f"lobby={tonight}", str(calm), "--run", str(run_dir), *confirm]) == 0
    out = capsys.readouterr().out
    assert f"calibrated cameras (on-threshold): lobby {lobby['on_threshold']:.3f}" in out
    assert "uncalibrated cameras" in out and calm.name in out
    summary = json.loads((run_dir / "detect" / "summary.json").read_text())
    assert summary["calibration"]["calibrated"] == {"lobby": lobby["on_threshold"]}

    layout = RunLayout(run_dir)
    params = resolve_params([run_dir / "params.yaml"], {})
    alerts = [a for a in run_alerts(params, layout) if a["camera"] == "lobby"]
    assert alerts, "the calibrated camera raised no alert on the video with fights"
    for alert in alerts:
        folder = Path(alert["folder"])
        assert (folder / "clip.mp4").stat().st_size > 0 and (folder / "snapshot.jpg").is_file()
        assert alert["threshold_from"] == "site" and alert["on_threshold"] == lobby["on_threshold"]
        assert alert["clip_start_t"] <= alert["alarm_t"] <= alert["clip_end_t"] and alert["window_scores"]
    verdicts = ["fight", "not_fight", "unsure"]
    for k, alert in enumerate(alerts):
        save_verdict(layout, alert, verdicts[k % 3], reviewer="test")

    field = run_dir.parent / "field"
    assert main(["feedback", str(layout.reviews), "--out", str(field), "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    groups = pd.read_csv(field / "groups.csv")
    assert set(groups["source_group"]) == {"lobby"} and (groups["label"] == "non-violent").any()
    assert "normal footage" in out and "groups_csv" in out
    assert main(["feedback", str(layout.reviews), "--out", str(field), "--run", str(run_dir)]) == 0
    assert capsys.readouterr().out.startswith("0 clip(s) added")  # the same reviews again add nothing

    # a site file of another export is refused, with the fix
    site["export"]["head_sha256"] = "0" * 64
    site_file.write_text(json.dumps(site))
    assert main(["detect", f"lobby={tonight}", "--run", str(run_dir)]) == 2
    assert "calibrated with another export" in capsys.readouterr().err
    site_file.write_bytes(first)
    return field


@pytest.mark.xdist_group("smoke_run")
@pytest.mark.e2e
def test_calibrate_detect_review_feedback_on_the_smoke_run(copy_of_smoke_run, tmp_path, capsys):
    run_field_loop(copy_of_smoke_run, tmp_path, capsys)


@pytest.mark.xdist_group("smoke_run")
@pytest.mark.e2e
@pytest.mark.slow
def test_a_rerun_trains_on_the_field_clips_with_each_camera_in_one_split(copy_of_smoke_run, tmp_path, capsys):
    from nexara_lib.run.runner import run_pipeline

    field = run_field_loop(copy_of_smoke_run, tmp_path, capsys)
    params = resolve_params([copy_of_smoke_run / "params.yaml"], {})
    dataset = Path(params["output_root"]) / "_synthetic" / f"n{params['synthetic_clips']}-seed{params['seed']}"
    csvs = [str(p) for p in (dataset / "groups.csv", field / "groups.csv") if p.is_file()]
    rerun = run_pipeline(
        [PARAMS / "base.yaml", PARAMS / "smoke.yaml"],
        {
            "output_root": str(tmp_path / "rerun"),
            "run_name": "field-rerun",
            "synthetic_clips": 0,
            "data_dir": [str(dataset), str(field)],
            "groups_csv": csvs,
        },
        notebooks=["01", "02", "03"],
    )
    manifest = pd.read_csv(rerun / "artifacts" / "manifest.csv", keep_default_na=False)
    imported = pd.read_csv(field / "imports.csv")
    in_field = manifest[manifest["source"] == "field"]
    assert len(in_field) == len(imported) and (in_field["group"] == "csv:lobby").all()
    # one camera, one group: never across two splits; the grouped split puts the field's one group in train (it
    # takes the largest share; field clips that were copies of the dataset's clips would follow those instead)
    assert set(in_field["split"]) == {"train"}
    results = json.loads((rerun / "artifacts" / "models" / "hybrid" / "training_results.json").read_text())
    assert results["epochs_run"] >= 1
    extraction = json.loads((rerun / "artifacts" / "extraction.json").read_text())
    assert extraction[0]["clips"] == len(manifest) and all(not s["failed"] for s in extraction)  # field clips too
