"""Summaries for people who never read code: each step's result and verdict in plain words, the summary box at
the top of the index and of every stakeholder report, and the index page built from them."""

import base64
import csv
import json

import pandas as pd
import pytest

from nexara_lib.evaluation.stats import decision_in_words, difference_rows, mcnemar_in_words
from nexara_lib.io import write_json_atomic
from nexara_lib.run.index_page import format_figure, write_index
from nexara_lib.run.summary_box import data_facts, describe_data, summary_box_html
from nexara_lib.stages.deploy import describe_deployment
from nexara_lib.stages.diagnostics import clip_file_names, describe_test_result
from nexara_lib.stages.headline import record_headline, record_summary

EVIL = "<script>alert(1)</script>"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def _run(tmp_path, synthetic=True, summaries=True):
    run_dir = tmp_path / "demo"
    (run_dir / "artifacts" / "figures").mkdir(parents=True)
    params = (
        {"synthetic_clips": 320, "data_dir": []}
        if synthetic
        else {"synthetic_clips": 0, "data_dir": ["/data/RWF-2000"]}
    )
    write_json_atomic(
        run_dir / "run.json",
        {
            "run_name": "demo",
            "status": "ok",
            "params": params,
            "notebooks": {
                "04_per_class_diagnostics.ipynb": {"status": "ok", "duration_s": 14.2},
                "05_tta.ipynb": {"status": "ok", "duration_s": 0.91},
            },
        },
    )
    with (run_dir / "artifacts" / "manifest.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip_id", "split", "class_name", "status"])
        for i, split in enumerate(["train"] * 6 + ["val"] * 2 + ["test"] * 2):
            writer.writerow([f"c{i}", split, ("violent", "non-violent")[i % 2], "ok"])
    if summaries:
        record_summary(
            run_dir,
            "04_per_class_diagnostics",
            "On 2 test clips the model labelled 93.8% correctly (95% CI 87.5% to 98.4%).",
            "Accurate on this data.",
        )
        record_summary(run_dir, "05_tta", f"TTA vs no TTA: {EVIL}", "Not worth it on this evidence.")
        record_headline(
            run_dir,
            "04_per_class_diagnostics",
            {
                "test accuracy": {"value": 0.938, "ci": [0.875, 0.984]},
                "time per epoch": {"value": 0.9162, "format": "seconds"},
            },
        )
    (run_dir / "artifacts" / "figures" / "per_class_accuracy.png").write_bytes(PNG)
    return run_dir


def test_data_facts_say_synthetic_or_real_and_clips_per_split(tmp_path):
    facts = data_facts(_run(tmp_path))
    assert facts["synthetic"] and facts["splits"] == {"train": 6, "val": 2, "test": 2}
    text = describe_data(facts)
    assert text.startswith("Synthetic demo clips") and "10 usable clips" in text and "6 for training" in text
    assert "2 for the final test" in text
    real = describe_data(data_facts(_run(tmp_path / "real", synthetic=False)))
    assert real.startswith("RWF-2000 (real video footage)") and "/data" not in real


def test_summary_box_of_a_report_and_of_the_index(tmp_path):
    run_dir = _run(tmp_path)
    box = summary_box_html(run_dir, "05_tta")
    assert "Summary: 5. Test-time augmentation" in box and "Not worth it on this evidence." in box
    assert EVIL not in box and "&lt;script&gt;" in box  # escaped
    assert 'href="index.html"' in box and "All reports of this run" in box
    index_box = summary_box_html(run_dir, None, index_href=None)
    assert "93.8% correctly (95% CI 87.5% to 98.4%)" in index_box and "Accurate on this data." in index_box
    assert "generated demo clips, not camera footage" in index_box  # the synthetic caveat comes with the headline
    assert "href" not in index_box
    missing = summary_box_html(run_dir, "06_ensemble")
    assert "No result yet: 6. Combining several models (ensemble) has not finished" in missing


def test_index_page_reads_as_a_summary_with_titles_figures_and_glossary(tmp_path):
    run_dir = _run(tmp_path)
    page = write_index(run_dir).read_text()
    assert page.index("Summary of this run") < page.index("Step by step") < page.index("Words used in these reports")
    assert "4. How well the model works, per class" in page and "5. Test-time augmentation" in page
    assert "04_per_class_diagnostics" not in page  # no file names as headings
    assert "14.2 s" in page and "0.9 s" in page  # one format for seconds
    assert 'src="data:image/png;base64,' in page and 'alt="Bar chart of test accuracy' in page
    for term in ("95% CI", "pp (percentage points)", "McNemar", "Calibration error (ECE)", "Threshold"):
        assert term in page
    assert "<script" not in page


def test_headline_numbers_never_in_scientific_notation():
    assert format_figure("max |dp|", {"value": 6.13e-08, "format": "number"}) == "< 0.0001"
    assert format_figure("p", {"value": 0.0421, "format": "number"}) == "0.0421"
    assert format_figure("x", {"value": 12345.6, "format": "number"}) == "12,346"
    assert format_figure("t", {"value": 0.9162, "format": "seconds"}) == "0.9 s"


def test_test_result_in_plain_words():
    test = {
        "accuracy": 0.9375,
        "accuracy_ci_low": 0.875,
        "accuracy_ci_high": 0.984,
        "acc_violent": 0.8,
        "acc_nonviolent": 1.0,
    }
    result, verdict = describe_test_result(test, 48)
    assert "On 48 test clips" in result and "93.8%" in result and "(95% CI 87.5% to 98.4%)" in result
    assert verdict.startswith("Useful, with room to improve") and "misses violent clips more often" in verdict
    _, strong = describe_test_result({**test, "accuracy_ci_low": 0.91, "acc_violent": 0.95}, 48)
    assert strong.startswith("Accurate on this data") and "misses" not in strong
    _, weak = describe_test_result({**test, "accuracy_ci_low": 0.45}, 48)
    assert "guessing" in weak


def test_decisions_differences_and_mcnemar_in_words():
    assert decision_in_words("TTA", [0.05, 0.02, 0.08], 0.01).startswith("Worth it")
    assert decision_in_words("TTA", [-0.05, -0.08, -0.02], 0.01).startswith(
        "Not worth it: TTA labels significantly fewer"
    )
    assert "no significant difference" in decision_in_words("TTA", [0.016, -0.016, 0.047], 0.62)
    assert "changed no prediction" in decision_in_words("TTA", [0.0, 0.0, 0.0], 1.0)
    rows = difference_rows({"accuracy_diff_ci": [0.016, -0.016, 0.047], "balanced_accuracy_diff_ci": [0, 0, 0]})
    assert rows[0] == {"metric (test)": "accuracy", "change": "+1.6 pp", "95% CI of the change": "-1.6 to +4.7 pp"}
    words = mcnemar_in_words({"b": 1, "c": 3, "p_value": 0.62}, "TTA")
    assert (
        words["clips TTA fixed (wrong before, right after)"] == 3
        and words["clips TTA broke (right before, wrong after)"] == 1
    )


def test_deployment_in_plain_words():
    parity = pd.DataFrame({"within tolerance": [True, True, False]}, index=["float32", "float16", "int8"])
    result, verdict = describe_deployment(
        {"detected": 3, "violent_segments": 4, "false_alarms": 1, "median_onset_to_alarm_s": 2.25},
        parity,
        {"realtime_factor": 0.7},
        "pooled_linear on whole frame + motion crop",
    )
    assert result.startswith("The detector runs the model carried forward, pooled_linear on whole frame + motion")
    assert "3 of 4 fights" in result and "1 false alarm" in result and "2.2 s after" in result
    assert "0.7 times real time" in result and "slower than live video" in result
    assert "missed 1 fight(s)" in verdict and "int8 export(s) do not match" in verdict
    _, clean = describe_deployment(
        {"detected": 4, "violent_segments": 4, "false_alarms": 0, "median_onset_to_alarm_s": None},
        parity.iloc[:2],
        {"realtime_factor": 2.0},
    )
    assert clean.startswith("On these test videos the detector caught every fight") and "gives the trained" in clean


def test_clips_are_named_by_file_not_by_the_dataset_folders_in_their_id():
    manifest = pd.DataFrame({"clip_id": ["rwf__val__Fight__a1.avi-1f"], "rel_path": ["val/Fight/a1.avi"]})
    assert clip_file_names(manifest) == {"rwf__val__Fight__a1.avi-1f": "a1.avi"}


def test_record_summary_refuses_empty_sentences(tmp_path):
    with pytest.raises(ValueError, match="verdict must be a non-empty sentence"):
        record_summary(tmp_path, "05_tta", "result", " ")


@pytest.mark.parametrize(
    "seconds, text",
    [(0.0032, "3.2 ms"), (0.9162, "0.9 s"), (14.2, "14.2 s"), (375, "6 min 15 s"), (3725, "1 h 02 min")],
)
def test_one_format_for_seconds(seconds, text):
    from nexara_lib.stages.formats import format_seconds

    assert format_seconds(seconds) == text


def test_per_class_accuracy_figure_draws_one_bar_per_row_with_its_interval():
    from nexara_lib.evaluation.figures import per_class_accuracy_figure

    fig = per_class_accuracy_figure([("all test clips", 0.938, 0.875, 0.984), ("violent clips", 0.969, 0.9, 1.0)])
    ax = fig.axes[0]
    assert [round(p.get_width(), 3) for p in ax.patches] == [0.938, 0.969]
    assert {t.get_text() for t in ax.get_yticklabels()} == {"violent clips", "all test clips"}
    assert ax.patches[0].get_y() > ax.patches[1].get_y()  # the first row on top
    assert {t.get_text() for t in ax.texts} == {"93.8%", "96.9%"}
    with pytest.raises(ValueError, match="at least one"):
        per_class_accuracy_figure([])


def test_report_figures_are_described_by_their_section():
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    from nexara_lib.run.reports import render_notebook_html

    png = base64.b64encode(PNG).decode()
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title"),
            new_markdown_cell("## Confusion matrices"),
            new_code_cell("fig", outputs=[new_output("display_data", data={"image/png": png})]),
        ]
    )
    for stakeholder in (True, False):
        page = render_notebook_html(nbformat.from_dict(nb), stakeholder, "4. Per class")
        assert 'alt="Figure: Confusion matrices"' in page and "No description has been provided" not in page


# --- step 3 leads with the model the run carries forward ----------------------------------------------------------

RUN_PARAMS = {"model": "hybrid", "streams": ["identity"], "seed": 0}
TRAINED = {  # the run's own recipe (hybrid on the whole frame), trained on train with early stopping on val
    "best_metrics": {"val_balanced_accuracy": 0.742, "val_class_gap": 0.08},
    "best_epoch": 11,
    "epochs_run": 18,
    "timings": {"seconds_per_epoch": 1.5},
}
REFIT = {"on": "train + val", "length or strength": "C = 0.1 (median out-of-fold choice)", "clips": 152}


def _selection(winner_recipe="pooled_linear", winner_streams="identity+motion_crop"):
    """A Selection as notebook 03 builds it: a winner other than the run's own recipe, unless asked."""
    from nexara_lib.training.selection import Candidate, Selection

    model = "hybrid" if winner_recipe == "default" else winner_recipe
    winner = Candidate(
        winner_recipe, winner_streams, {**RUN_PARAMS, "model": model, "streams": winner_streams.split("+")}
    )
    rows = [
        (winner.name, winner_recipe, winner_streams, 0.831, 0.012),
        ("default | identity", "default", "identity", 0.605, 0.02),
    ]
    ranking = pd.DataFrame(
        [
            {
                "rank": i + 1,
                "candidate": name,
                "recipe": recipe,
                "streams": streams,
                "accuracy": acc,
                "accuracy std": std,
                "balanced accuracy": acc,
                "class gap": 0.05,
                "AUC": 0.88,
            }
            for i, (name, recipe, streams, acc, std) in enumerate(rows)
        ]
    )
    comparisons = pd.DataFrame(
        [{"against": "default | identity", "role": "runner-up", "difference": 0.226, "low": 0.12, "high": 0.33}]
    )
    choices = {"epochs": 4, "threshold": 0.84, "temperature": 1.1}
    return Selection(ranking, winner, comparisons, pd.DataFrame(), choices, {}, cv_folds=5, seeds=[1, 2, 3])


def test_step_3_names_the_selected_model_first_and_the_runs_own_recipe_second():
    from nexara_lib.stages.training import describe_training

    result, verdict = describe_training(TRAINED, _selection(), RUN_PARAMS, refit=REFIT)
    assert result.startswith("The model carried forward is pooled_linear on whole frame + motion crop, chosen by ")
    assert "5-fold cross-validation" in result and "83.1% cross-validated accuracy" in result
    assert "refit on train + val (152 clips), C = 0.1" in result
    assert result.index("pooled_linear") < result.index("83.1%") < result.index("hybrid") < result.index("74.2%")
    assert "The run's own recipe, hybrid on whole frame, reached 74.2% balanced accuracy" in result
    assert verdict == (
        "pooled_linear on whole frame + motion crop goes forward. Against hybrid on whole frame (runner-up) it scored "
        "+22.6 points of cross-validated accuracy (95% CI +12.0 to +33.0): a significant difference."
    )
    assert "|" not in verdict  # stakeholders read model and streams in words, not candidate ids


def test_step_3_when_selection_carries_the_runs_own_recipe():
    from nexara_lib.stages.training import describe_training

    result, _ = describe_training(TRAINED, _selection("default", "identity"), RUN_PARAMS, refit=REFIT)
    assert result.startswith("The model carried forward is hybrid on whole frame, chosen by ")
    assert "It is the run's own recipe; trained on the training clips alone it reached 74.2%" in result


def test_step_3_without_selection_carries_the_runs_recipe():
    from nexara_lib.stages.training import describe_training

    result, verdict = describe_training(TRAINED, None, RUN_PARAMS)
    assert result.startswith("The model carried forward is the run's own recipe, hybrid on whole frame: it reached")
    assert "goes forward" in verdict


def test_step_3_headline_and_index_lead_with_the_carried_model(tmp_path):
    from nexara_lib.layout import RunLayout
    from nexara_lib.stages.training import publish_headline

    run_dir = _run(tmp_path)
    layout = RunLayout(run_dir)
    write_json_atomic(layout.selection, {"carried": {"refit": REFIT}})
    publish_headline(TRAINED, _selection(), RUN_PARAMS, layout)
    figures = list(json.loads((run_dir / "artifacts" / "headline.json").read_text())["03_hybrid_training"])
    assert figures[:3] == [
        "model carried forward (chosen by cross-validation)",
        "its cross-validated accuracy",
        "its refit",
    ]
    assert figures.index("the run's own recipe") < figures.index("the run's own recipe: validation balanced accuracy")
    page = write_index(run_dir).read_text()
    step = page[page.index("3. ") :]
    assert step.index("pooled_linear on whole frame + motion crop") < step.index("74.2%")


def test_steps_4_and_5_name_the_carried_model():
    from nexara_lib.stages.data import RunRecipe
    from nexara_lib.stages.formats import stream_set_words

    assert stream_set_words("identity+motion_crop+flow:identity") == "whole frame + motion crop + whole frame (flow)"
    selected = RunRecipe({"model": "pooled_linear", "streams": ["identity", "motion_crop"]}, None, None, {"x": 1})
    own = RunRecipe(RUN_PARAMS, None, None, None)
    assert (
        selected.describe()
        == "pooled_linear on whole frame + motion crop (chosen by cross-validation, refit on train + val)"
    )
    assert own.describe() == "hybrid on whole frame (the run's own recipe)"
    test = {
        "accuracy": 0.9,
        "accuracy_ci_low": 0.8,
        "accuracy_ci_high": 0.95,
        "acc_violent": 0.9,
        "acc_nonviolent": 0.9,
    }
    result, _ = describe_test_result(test, 25, selected.describe())
    assert result.startswith("The model carried forward, pooled_linear on whole frame + motion crop (chosen by ")
    assert "was tested on 25 test clips" in result


def test_step_2_over_a_complete_cache_says_so_instead_of_a_speed(tmp_path):
    """A rerun of 02 whose clips are all cached computes nothing: no speed (it used to fail formatting None)."""
    from nexara_lib.layout import open_run
    from nexara_lib.stages.features import publish_headline

    layout = open_run(tmp_path / "run")
    cached = pd.DataFrame([{"clips": 12, "failed": 0, "cached_before": 12, "clips_per_s": None}])
    publish_headline({"frames_per_clip": 6, "backbone": "flow"}, layout, cached)
    summary = json.loads(layout.summaries.read_text())["02_feature_extraction"]
    assert "already in the feature cache (12 reused)" in summary["result"]
    assert "clips per second" not in json.loads(layout.headline.read_text())["02_feature_extraction"]
    computed = pd.DataFrame([{"clips": 12, "failed": 1, "cached_before": 0, "clips_per_s": 3.25}])
    publish_headline({"frames_per_clip": 6, "backbone": "flow"}, layout, computed)
    summary = json.loads(layout.summaries.read_text())["02_feature_extraction"]
    assert "11 clips" in summary["result"] and "at 3.2 clips per second" in summary["result"]
