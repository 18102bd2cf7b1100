"""End to end: the real notebooks executed by papermill through `nexara run` on smoke-sized data."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from nexara_lib.run.report_copy import copy_problems
from nexara_lib.run.runner import NotebookFailed, run_pipeline
from nexara_lib.training.model_files import load_sequence_model

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params"
SURV = ROOT.parent / "shared" / "data" / "surv-fight-dev"
NOTEBOOKS = [
    "01_data_audit",
    "02_feature_extraction",
    "03_hybrid_training",
    "04_per_class_diagnostics",
    "05_tta",
    "06_ensemble",
    "07_deploy",
    "08_field_adaptation",
    "09_alert_review",
]
REMOTE = re.compile(r"<(?:script|link)[^>]+(?:src|href)=\"(?:https?:)?//", re.IGNORECASE)


def assert_run_ok(run_dir: Path, notebooks):
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "ok"
    assert [run["notebooks"][n]["status"] for n in notebooks] == ["ok"] * len(notebooks)
    assert run["params"]["seed"] == 42 and run["versions"]["tensorflow"] and "commit" in json.dumps(run)
    for name in notebooks:
        executed = nbformat.read(run_dir / "notebooks" / f"{name}.ipynb", as_version=4)
        errors = [
            o
            for c in executed.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if o.get("output_type") == "error"
        ]
        assert not errors, f"{name} has error outputs"
        for page in (run_dir / "reports" / f"{name}.html", run_dir / "reports" / f"{name}.full.html"):
            text = page.read_text()
            assert not REMOTE.search(text), f"{page.name} loads a remote asset"
        assert "start_notebook(" not in (run_dir / "reports" / f"{name}.html").read_text()  # code hidden
    return run


@pytest.mark.xdist_group("smoke_run")
@pytest.mark.e2e
def test_smoke_pipeline_runs_all_notebooks_and_writes_artifacts(smoke_run, tmp_path):
    run_dir = smoke_run
    assert run_dir.name == "smoke"
    assert_run_ok(run_dir, NOTEBOOKS)
    art = run_dir / "artifacts"

    manifest = pd.read_csv(art / "manifest.csv")
    assert len(manifest) == 32 and set(manifest["split"]) == {"train", "val", "test"}
    assert (manifest["status"] == "ok").all()
    assert manifest.groupby("split")["label"].nunique().min() == 2  # both classes in every split

    results = json.loads((art / "models" / "hybrid" / "training_results.json").read_text())
    assert 1 <= results["best_epoch"] <= results["epochs_run"] <= 3
    model = load_sequence_model(art / "models" / "hybrid" / "model.keras")
    assert model.output_shape == (None, 2)
    assert list((art / "models" / "hybrid" / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (art / "models" / "hybrid" / "checkpoint").exists()

    # notebook 03's study: the run's recipe vs the over-regularized one, 2 seeds each on the fixed split
    study = json.loads((art / "models" / "hybrid" / "study" / "study.json").read_text())
    assert study["cv_folds"] == 0 and study["seeds"] == [1, 2]
    assert list(study["summary"]) == ["default", "overregularized"]
    assert study["configs"]["overregularized"]["augment_factor"] == 10
    assert len(study["runs"]) == 2 * 2
    for config in study["summary"].values():
        assert 0 <= config["accuracy"]["mean"] <= 1 and config["accuracy"]["std"] >= 0
    report = (run_dir / "reports" / "03_hybrid_training.html").read_text()
    assert "Cross-validation and ablations" in report and "2 seeds [1, 2]" in report
    assert (art / "figures" / "recipe_study.png").exists()

    metrics = json.loads((art / "metrics.json").read_text())
    assert metrics["chosen_on"] == "val"
    test = metrics["metrics"]["test"]["balanced_accuracy"]
    for key in ("accuracy", "acc_violent", "acc_nonviolent", "roc_auc"):
        assert 0.0 <= test[key] <= 1.0
    assert test["accuracy_ci_low"] <= test["accuracy"] <= test["accuracy_ci_high"]

    tta = json.loads((art / "tta_results.json").read_text())
    assert tta["chosen"][0] == "identity"
    assert set(tta["chosen"]) <= {"identity", "hflip", "frame_shift", "feature_shift", "feature_noise"}
    assert len(list((art / "features").glob("flow-*-hflip/*.npy"))) > 0  # frame-level view went through the cache

    ensemble = json.loads((art / "models" / "ensemble" / "ensemble.json").read_text())
    assert len(ensemble["member_paths"]) == 3 and abs(sum(ensemble["weights"]) - 1) < 1e-6
    # member 1 has the run's recipe and seed, but 03 trained on frame-augmented copies too: members train on the
    # clean clips, so it is trained here, not taken from 03 (stages.ensemble._is_run_model; the demo reuses it)
    assert ensemble["member_paths"][0] == "m1-hybrid-flow-seed42/model.keras"
    headline = json.loads((art / "headline.json").read_text())
    assert set(headline) == set(NOTEBOOKS)
    assert {"per_source_test", "hardest_misclassified_test"} <= set(metrics)
    index = (run_dir / "reports" / "index.html").read_text()
    assert "test accuracy" in index and "06_ensemble.html" in index

    # Issue 14: every step says what it found in words; each stakeholder report opens with the summary box and
    # shows nothing that reads as machine output (the renderer's own check), nor does the index.
    summaries = json.loads((art / "summaries.json").read_text())
    assert set(summaries) == set(NOTEBOOKS) and all(s["result"] and s["verdict"] for s in summaries.values())
    assert "95% CI" in summaries["04_per_class_diagnostics"]["result"]
    for name in NOTEBOOKS:
        page = (run_dir / "reports" / f"{name}.html").read_text()
        assert page.index('class="nexara-summary"') < page.index("<h1"), name
        assert summaries[name]["verdict"].split(":")[0].replace("'", "&#x27;") in page, name
        assert copy_problems(page) == [], name
    assert copy_problems(index) == [] and "Summary of this run" in index and "Words used in these reports" in index
    assert "4. How well the model works, per class" in index and 'src="data:image/png;base64,' in index

    # The stakeholder reports and the index state the TTA and ensemble effects in words, with CIs.
    verdicts = {
        "05_tta": tta["verdict"],
        "06_ensemble": json.loads((art / "ensemble_results.json").read_text())["verdict"],
    }
    for name, verdict in verdicts.items():
        assert "95% CI" in verdict and "significant" in verdict or "no measurable effect" in verdict
        assert verdict.split(":")[0] in (run_dir / "reports" / f"{name}.html").read_text()
    assert "tta vs no tta" in index.lower() and "ensemble vs best single member" in index.lower()

    # The saved ensemble artifact alone reproduces the ensemble's test predictions.
    results = json.loads((art / "ensemble_results.json").read_text())
    assert 0 <= results["artifact_check"]["max_abs_difference"] < 1e-5

    # 07: the carried-forward model exported, every export within its tolerance of Keras, the live detector equal
    # to offline extraction, and the detector run on the long test video and the 2x2 grid built from test clips.
    export = json.loads((art / "export" / "export.json").read_text())
    assert set(export["variants"]) == {"float32", "float16", "int8"} and export["input"] == {"T": 6, "D": 49}
    assert export["threshold"]["chosen_on"] == "validation" and 0 < export["window_s"] < 10
    deploy = json.loads((art / "deploy" / "deploy.json").read_text())
    assert all(row["within tolerance"] for row in deploy["parity"])
    assert deploy["stream_vs_offline"] and all(row["within 0.0001"] for row in deploy["stream_vs_offline"])
    assert deploy["long_video"]["violent_segments"] >= 1 and deploy["detection"]["2x2 grid"]["windows"] > 0
    assert {row["policy"] for row in deploy["confirmation"]} == {
        "confirmed (3 of 4)",
        "lighter (2 of 3)",
        "every window above threshold",
    }
    page = (run_dir / "reports" / "07_deploy.html").read_text()
    assert (
        "Parity" in page
        and "confirmed (3 of 4)" in page
        and (art / "figures" / "detector_timeline_2x2_grid.png").exists()
    )

    # `nexara detect` on a file, a folder and a grid video, with the run's export
    videos = art / "deploy" / "videos"
    for sources, grid, cameras in (
        ([videos / "camera-1.mp4"], "1x1", 1),
        ([videos], "1x1", 5),
        ([videos / "grid-2x2.mp4"], "2x2", 4),
    ):
        out = tmp_path / f"detect-{grid}-{len(sources[0].suffix)}"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "nexara_lib",
                "detect",
                *map(str, sources),
                "--run",
                str(run_dir),
                "--grid",
                grid,
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        summary = json.loads((out / "summary.json").read_text())
        assert sum(len(s["cells"]) for s in summary["sources"]) == cameras and summary["windows"] > 0
        timelines = {p.name for p in out.glob("*.timeline.png")}
        assert (
            (out / "events.jsonl").exists() and len(timelines) == len(summary["sources"]) and "alert(s)" in proc.stdout
        )

    # A rerun of the finished run keeps every notebook (issue 15, fault 10): nothing is audited, extracted or trained
    # again, and the run says so.
    models = {p: p.stat().st_mtime_ns for p in (art / "models").rglob("model.keras")}
    messages = []
    run_pipeline(
        [PARAMS / "base.yaml", PARAMS / "smoke.yaml"], {"output_root": str(run_dir.parent)}, log=messages.append
    )
    assert sum("kept (--force runs it again)" in m for m in messages) == len(NOTEBOOKS)
    assert models and {p: p.stat().st_mtime_ns for p in models} == models


@pytest.mark.xdist_group("smoke_run")
@pytest.mark.e2e
@pytest.mark.slow
def test_smoke_run_reruns_stacking_cache_repair_and_recipe_selection(copy_of_smoke_run, tmp_path):
    run_dir = copy_of_smoke_run
    art = run_dir / "artifacts"
    manifest = pd.read_csv(art / "manifest.csv")
    # The stacking combination on the same run: members are reused (same recipe), not retrained.
    trained = {p: p.stat().st_mtime_ns for p in (art / "models" / "ensemble").glob("*/model.keras")}
    run_pipeline(
        [PARAMS / "base.yaml", PARAMS / "smoke.yaml"],
        {"output_root": str(tmp_path), "ensemble_method": "stacking"},
        notebooks=["06"],
    )
    stacked = json.loads((art / "models" / "ensemble" / "ensemble.json").read_text())
    assert stacked["method"] == "stacking" and len(stacked["stacking_coef"]) == 3
    assert {p: p.stat().st_mtime_ns for p in trained} == trained

    # Rerunning extraction reuses the cache: nothing recomputed but a cache file cut short (issue 15, fault 2), which
    # is moved aside, recomputed to the same bytes and counted.
    cut = sorted((art / "features").glob("flow-*-identity/*.npy"))[0]
    original = cut.read_bytes()
    cut.write_bytes(original[: len(original) // 2])
    run_pipeline([PARAMS / "base.yaml", PARAMS / "smoke.yaml"], {"output_root": str(tmp_path)}, notebooks=["02"])
    extraction = json.loads((art / "extraction.json").read_text())
    repaired = [s for s in extraction if Path(s["cache_dir"]).name == cut.parent.name]
    assert len(repaired) == 1 and repaired[0]["computed"] == 1 and len(repaired[0]["bad_entries"]) == 1
    assert repaired[0]["bad_entries"][0]["file"] == cut.name and "truncated" in repaired[0]["bad_entries"][0]["reason"]
    assert cut.read_bytes() == original
    assert all(s["computed"] == 0 and s["cached_before"] == s["clips"] for s in extraction if s not in repaired)
    clean = [s for s in extraction if s["transform"] == "identity"]
    copies = [s for s in extraction if s["transform"].startswith("aug-")]
    assert clean and all(s["clips"] == 32 for s in clean)
    assert len(copies) == 1 and copies[0]["clips"] == int((manifest["split"] == "train").sum())

    # With select_recipe: cv, 03 ranks every candidate by grouped CV on train + val (never test) and carries the
    # winner forward, refit on train + val; 04 evaluates it, thresholds chosen on its out-of-fold predictions.
    selecting = {
        "output_root": str(tmp_path),
        "select_recipe": "cv",
        "cv_folds": 2,
        "baseline_models": ["pooled_linear"],
        "candidate_streams": ["identity+motion_crop"],
    }
    run_pipeline([PARAMS / "base.yaml", PARAMS / "smoke.yaml"], selecting, notebooks=["02", "03", "04", "07"])
    selection = json.loads((art / "selection.json").read_text())
    assert [r["candidate"] for r in selection["ranking"]][0] == selection["winner"]["name"]
    assert {r["candidate"] for r in selection["ranking"]} == {
        "default | identity",
        "pooled_linear | identity",
        "overregularized | identity",
        "default | identity+motion_crop",
        "pooled_linear | identity+motion_crop",
    }
    development = manifest[manifest["split"].isin(["train", "val"])]
    assert {row["clip_id"] for row in selection["oof"]} <= set(development["clip_id"].astype(str))
    assert selection["choices"]["chosen_on"].startswith("out-of-fold")
    assert (run_dir / selection["carried"]["model_path"]).exists()
    metrics = json.loads((art / "metrics.json").read_text())
    assert metrics["selection"]["winner"] == selection["winner"]
    deploy = json.loads((run_dir / "artifacts" / "deploy" / "deploy.json").read_text())  # 07 on real clips
    assert all(row["within 0.0001"] for row in deploy["stream_vs_offline"])
    assert all(row["within tolerance"] for row in deploy["parity"]) and metrics["chosen_on"].startswith("out-of-fold")
    assert json.loads((run_dir / "run.json").read_text())["selection"]["winner"] == selection["winner"]
    report = (run_dir / "reports" / "03_hybrid_training.html").read_text()
    assert "carried forward" in report and selection["winner"]["name"].split(" |")[0] in report
    export = json.loads((art / "export" / "export.json").read_text())  # 07 exports and checks the winner
    assert export["run"]["stream_set"] == selection["winner"]["streams"] and export["threshold"][
        "chosen_on"
    ].startswith("out-of-fold")
    deploy = json.loads((art / "deploy" / "deploy.json").read_text())
    assert all(row["within 0.0001"] for row in deploy["stream_vs_offline"])


@pytest.mark.e2e
def test_failing_notebook_names_notebook_cell_and_partial_copy(tmp_path):
    # Notebook 03 on a run folder without a manifest must fail clearly, not deep inside TensorFlow.
    with pytest.raises(NotebookFailed) as err:
        run_pipeline([PARAMS / "base.yaml", PARAMS / "smoke.yaml"], {"output_root": str(tmp_path)}, notebooks=["03"])
    text = str(err.value)
    assert "03_hybrid_training" in text and "cell" in text and "01_data_audit" in text
    assert Path(err.value.partial_notebook).exists()
    run = json.loads((tmp_path / "smoke" / "run.json").read_text())
    assert run["notebooks"]["03_hybrid_training"]["status"] == "failed"


def test_cli_bad_parameter_fails_fast_naming_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("synthetic_clips: 8\nlstm_unit: 4\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nexara_lib",
            "run",
            "-f",
            str(PARAMS / "base.yaml"),
            "-f",
            str(bad),
            "--set",
            f"output_root={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "'lstm_unit'" in proc.stderr and str(bad) in proc.stderr and "lstm_units" in proc.stderr
    assert not (tmp_path / "smoke").exists() and not list(tmp_path.glob("bad-*"))


@pytest.mark.slow
@pytest.mark.e2e
def test_cli_failing_notebook_exits_nonzero(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nexara_lib",
            "run",
            "-f",
            str(PARAMS / "base.yaml"),
            "-f",
            str(PARAMS / "smoke.yaml"),
            "--set",
            f"output_root={tmp_path}",
            "--only",
            "04",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert "04_per_class_diagnostics" in proc.stderr and "partial notebook" in proc.stderr


@pytest.mark.e2e
@pytest.mark.realdata
@pytest.mark.slow
def test_real_clips_with_tflite_backbone_grouped_by_source(tmp_path):
    if not SURV.is_dir():
        pytest.skip("../shared/data/surv-fight-dev is not present")
    tiny = {
        "output_root": str(tmp_path),
        "synthetic_clips": 0,
        "max_clips": 48,
        "frames_per_clip": 4,
        "dense_units": 16,
        "lstm_units": 8,
        "lstm_units_last": 4,
        "head_units": [8, 8],
        "epochs": 3,
        "bootstrap_samples": 50,
        "cv_folds": 2,
        "ablation_configs": [],
        "ablation_seeds": [1],
    }
    run_dir = run_pipeline(
        [PARAMS / "base.yaml", PARAMS / "smoke.yaml", PARAMS / "surv_dev.yaml"],
        tiny,
        notebooks=["01", "02", "03", "04", "07"],
    )
    assert_run_ok(run_dir, NOTEBOOKS[:4] + ["07_deploy"])
    manifest = pd.read_csv(run_dir / "artifacts" / "manifest.csv")
    assert len(manifest) == 48 and manifest["group"].str.startswith("csv:").all()
    assert manifest.groupby("group")["split"].nunique().max() == 1  # no source recording in two splits
    cache = next((run_dir / "artifacts" / "features").glob("mobilenet_v1_tflite-*"))
    assert len(list(cache.glob("*.npy"))) == 48
    metrics = json.loads((run_dir / "artifacts" / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["test"]["default"]["accuracy"] <= 1.0
    # surv_dev selects the recipe by grouped 2-fold CV on the real clips: every train+val clip is scored once per
    # candidate, by a model blind to its recording; the motion-crop stream is extracted; 04 evaluates the winner
    selection = json.loads((run_dir / "artifacts" / "selection.json").read_text())
    # (hybrid, pooled_linear, pooled_mlp) x (whole frame, + motion crop, + motion crop + its motion image)
    assert len(selection["ranking"]) == 9
    runs = pd.read_csv(run_dir / "artifacts" / "models" / "selection" / "identity+motion_crop" / "runs.csv")
    assert set(runs["fold"]) == {"fold1", "fold2"}
    assert (runs.groupby("config")["n_evaluated"].sum() == (manifest["split"] != "test").sum()).all()
    assert next((run_dir / "artifacts" / "features").glob("mobilenet_v1_tflite-*-motion_crop-f0.50"))
    assert next((run_dir / "artifacts" / "features").glob("mobilenet_v1_tflite-*-motion_image_crop-*"))
    assert metrics["selection"]["winner"] == selection["winner"]
    deploy = json.loads((run_dir / "artifacts" / "deploy" / "deploy.json").read_text())  # 07 on real clips
    assert all(row["within 0.0001"] for row in deploy["stream_vs_offline"])
    assert all(row["within tolerance"] for row in deploy["parity"])
