"""Diagnostics tables, figures and metrics.json on tiny synthetic predictions."""

import json

import matplotlib

matplotlib.use("Agg")  # headless: figures are built, never shown

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from nexara_lib.evaluation import diagnostics as dg
from nexara_lib.evaluation import figures as fg
from nexara_lib.evaluation.metrics import binary_metrics
from nexara_lib.evaluation.predictions import Predictions
from nexara_lib.stages.widgets import threshold_slider


def _preds(split, n=60, seed=0, separation=0.35):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    p = np.clip(0.5 + (y - 0.5) * separation * 2 + rng.normal(0, 0.2, n), 0, 1)
    return Predictions(split, y, p, clip_ids=tuple(f"{split}_{i}" for i in range(n)))


VAL, TEST = _preds("val", seed=0), _preds("test", seed=1)


def test_confusion_matrix_figure_counts_and_rates():
    fig = fg.confusion_matrix_figure([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["1", "1", "1", "2"]  # tn fp / fn tp
    assert [t.get_text() for t in fig.axes[1].texts] == ["50.0%", "50.0%", "33.3%", "66.7%"]


def test_roc_pr_figure_has_auc_in_legend():
    fig = fg.roc_pr_figure({"val": VAL, "test": TEST}, operating_points={"bal": 0.5})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(label.startswith("val (ROC AUC") for label in labels)
    assert any(label.startswith("test (ROC AUC") for label in labels)
    assert any("PR AUC" in t.get_text() for t in fig.axes[1].get_legend().get_texts())


def test_threshold_sweep_and_figure():
    sweep = dg.threshold_sweep(VAL)
    assert len(sweep) == 101 and sweep["threshold"].iloc[0] == 0.0
    assert sweep["acc_violent"].iloc[0] == 1.0 and sweep["fpr"].iloc[0] == 1.0  # everything violent at t=0
    assert (np.diff(sweep["acc_violent"]) <= 0).all()  # recall never rises with the threshold
    fig = fg.threshold_sweep_figure(sweep, chosen={"balanced": 0.45, "fpr<=3%": 0.8})
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "balanced: 0.450" in labels and "fpr<=3%: 0.800" in labels


def test_reliability_figure():
    fig = fg.reliability_figure({"val": VAL, "test": TEST})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert any("ECE" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_per_class_table_rows_and_ci_columns():
    table = dg.per_class_table({"val": VAL, "test": TEST}, {"default": 0.5, "strict": 0.7}, n_bootstrap=50)
    assert list(table.index) == [("val", "default"), ("val", "strict"), ("test", "default"), ("test", "strict")]
    for name in ("accuracy", "balanced_accuracy", "roc_auc"):
        assert (table[f"{name}_ci_low"] <= table[name]).all() and (table[name] <= table[f"{name}_ci_high"]).all()
    assert {"acc_nonviolent", "acc_violent", "class_gap", "f1_violent", "precision_nonviolent"} <= set(table.columns)


def test_per_source_table_groups_and_checks_alignment():
    n = len(TEST)
    manifest = pd.DataFrame(
        {
            "clip_id": list(reversed(TEST.clip_ids)),  # different order on purpose
            "label": list(reversed(TEST.y_true.tolist())),
            "source": ["rwf" if i % 2 else "hockey" for i in range(n)],
            "group": ["g1" if i < 20 else "g2" for i in range(n)],
        }
    )
    table = dg.per_source_table(manifest, TEST, 0.5)
    assert set(zip(table["by"], table["value"], strict=True)) == {
        ("all", "all"),
        ("source", "hockey"),
        ("source", "rwf"),
        ("group", "g1"),
        ("group", "g2"),
    }
    by_source = table[table["by"] == "source"]
    assert by_source["n"].sum() == n
    # counts per source reproduce the overall accuracy
    overall = table.loc[table["by"] == "all", "accuracy"].item()
    assert (by_source["accuracy"] * by_source["n"]).sum() / n == pytest.approx(overall)
    wrong = manifest.assign(label=1 - manifest["label"])
    with pytest.raises(ValueError, match="labels differ"):
        dg.per_source_table(wrong, TEST, 0.5)
    with pytest.raises(ValueError, match="not in manifest"):
        dg.per_source_table(manifest.iloc[1:], TEST, 0.5)


def test_hardest_misclassified_sorted_by_margin():
    preds = Predictions("test", [0, 0, 1, 1, 1], [0.95, 0.6, 0.2, 0.45, 0.9], clip_ids=("a", "b", "c", "d", "e"))
    table = dg.hardest_misclassified(preds, 0.5, k=3)
    assert list(table["clip_id"]) == ["a", "c", "b"]  # e is right; d is wrong but least confident
    assert table["margin"].tolist() == pytest.approx([0.45, 0.3, 0.1])
    assert table["index"].tolist() == [0, 2, 1]
    assert set(table.columns) >= {"clip_id", "y_true", "prob", "margin"}


def test_attention_gallery_figure_layout_and_checks():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (6, 32, 40, 3), dtype=np.uint8) for _ in range(2)]
    attention = [np.full(6, 1 / 6), np.array([0.1, 0.1, 0.5, 0.1, 0.1, 0.1])]
    fig = fg.attention_gallery_figure(frames, attention, titles=["clip a", "clip b"], thumb_height=16)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert fig.axes[0].get_title() == "clip a"
    assert len(fig.axes[3].patches) == 6  # one bar per frame
    with pytest.raises(ValueError, match="attention must be"):
        fg.attention_gallery_figure(frames, [np.ones(5), np.ones(6)])
    with pytest.raises(ValueError, match="uint8"):
        fg.attention_gallery_figure([frames[0].astype(np.float32)], [np.ones(6)])


def test_threshold_slider_updates_metrics():
    widget = threshold_slider(VAL.y_true, VAL.prob, initial=0.3)
    assert widget.result["threshold"] == pytest.approx(0.3)
    widget.children[0].value = 0.8
    assert widget.result["threshold"] == pytest.approx(0.8)
    assert widget.result["fpr"] <= binary_metrics(VAL.y_true, VAL.prob, 0.3)["fpr"]


def test_metrics_report_is_json_and_chosen_on_validation():
    report = dg.metrics_report(VAL, TEST, max_fpr=0.05, n_bootstrap=50, seed=0)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)["chosen_on"] == "val"
    thresholds = report["thresholds"]
    assert set(thresholds) == {"default", "balanced_accuracy", "max_fpr"}
    assert report["metrics"]["val"]["max_fpr"]["fpr"] <= 0.05  # the cap holds where it was chosen
    for split in ("val", "test"):
        m = report["metrics"][split]["balanced_accuracy"]
        assert m["threshold"] == thresholds["balanced_accuracy"]
        assert m["accuracy_ci_low"] <= m["accuracy"] <= m["accuracy_ci_high"]
        assert 0 <= report["calibration"][split]["ece"] <= 1
    with pytest.raises(ValueError, match="validation split"):
        dg.metrics_report(TEST, TEST, n_bootstrap=10)
    with pytest.raises(ValueError, match="test_preds"):
        dg.metrics_report(VAL, VAL, n_bootstrap=10)
