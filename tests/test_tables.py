"""The display layer: value formatting, friendly headers, HTML tables that fit, IPython formatters."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from nexara_lib.stages.tables import format_value, friendly_label, install_display_formatters, mapping_html, table_html


def _widths(html_text):
    return [int(w) for w in re.findall(r'data-estimated-width="(\d+)"', html_text)]


def _cells(html_text):
    return re.findall(r"<t[dh](?: [^>]*)?>(.*?)</t[dh]>", html_text)


@pytest.mark.parametrize(
    "name, words",
    [
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced accuracy"),
        ("acc_violent", "accuracy (violent)"),
        ("acc_nonviolent", "accuracy (non-violent)"),
        ("class_gap", "gap between the classes"),
        ("roc_auc", "ROC AUC"),
        ("pr_auc", "PR AUC"),
        ("ece", "calibration error (ECE)"),
        ("fpr", "false-positive rate"),
        ("tpr", "true-positive rate"),
        ("f1_violent", "F1 (violent)"),
        ("precision_violent", "precision (violent)"),
        ("n", "clips"),
        ("n_clips", "clips"),
        ("clips_per_s", "clips per second"),
        ("seconds_per_epoch", "time per epoch"),
        ("p_value", "p-value"),
        ("latency_s", "latency"),
        ("n_videos", "videos"),
        ("accuracy_ci_low", "accuracy 95% CI low"),
        ("balanced_accuracy_ci_high", "balanced accuracy 95% CI high"),
        ("source_path", "source path"),
        ("already friendly", "already friendly"),
        ("Chosen_By", "Chosen_By"),
    ],
)
def test_friendly_label(name, words):
    assert friendly_label(name) == words


@pytest.mark.parametrize(
    "value, column, text",
    [
        (0.935, "accuracy", "93.5%"),
        (0.9012, "balanced_accuracy_ci_low", "90.1%"),
        (0.5, "acc_violent", "50.0%"),
        (np.float32(0.25), "recall_violent", "25.0%"),
        (0.1, "fpr", "10.0%"),
        (0.875, "agreement", "87.5%"),
        (0.016, "accuracy_delta", "+1.6 pp"),
        (-0.02, "diff", "-2.0 pp"),
        (0.03, "tta_gain", "+3.0 pp"),
        (0.51234, "threshold", "0.512"),
        (0.5, "prob", "0.500"),
        (1.5, "temperature", "1.500"),
        (0.3456, "val_loss", "0.346"),
        (0.0004, "p_value", "< 0.001"),
        (0.0421, "p_value", "0.042"),
        (0.9, "latency_s", "0.9 s"),
        (123.4, "seconds_per_epoch", "2 min 03 s"),
        (0.0032, "latency_s", "3.2 ms"),
        (2.25, "duration", "2.2 s"),
        (1234, "n", "1,234"),
        (np.int64(1234567), "frames", "1,234,567"),
        (1234.0, "n_clips", "1,234"),
        (12345.4, "", "12,345"),
        (2.34567, "", "2.346"),
        (2.5, "", "2.5"),
        (0.123456, "", "0.1235"),
        (0.999, "", "0.999"),
        (0.00001, "", "< 0.0001"),
        (0.0, "", "0"),
        (float("nan"), "accuracy", "n/a"),
        (None, "", "n/a"),
        (pd.NaT, "", "n/a"),
        (np.nan, "", "n/a"),
        (True, "", "yes"),
        (np.bool_(False), "", "no"),
        (1.5, "accuracy", "1.5"),
        ([1, 2, 3], "", "1, 2, 3"),
        (("a", "b"), "", "a, b"),
        ({"b", "a"}, "", "a, b"),
        ([], "", "none"),
        (np.array([0.5, 0.25]), "accuracy", "50.0%, 25.0%"),
        ({"accuracy": 0.9, "n_clips": 12}, "", "accuracy: 90.0%, clips: 12"),
        (1, "label", "violent"),
        (np.int64(0), "y_true", "non-violent"),
        ("1", "predicted", "violent"),
        (0, "pred", "non-violent"),
        ("violent", "label", "violent"),
        (2, "label", "2"),
    ],
)
def test_format_value(value, column, text):
    assert format_value(value, column) == text


def test_no_float_is_written_in_scientific_notation():
    for value in (9.990e-01, 1.2e-7, 3.4e12, -5e-6, 1e-5, 123456789.123):
        for column in ("", "accuracy", "threshold", "p_value", "latency_s", "learning_rate", "share", "loss"):
            assert "e" not in format_value(value, column).replace("none", ""), (value, column)
    assert format_value(1e-5, "learning_rate") == "0.00001"


def test_cells_and_headers_are_escaped():
    df = pd.DataFrame({"<script>alert(1)</script>": ["<script>x</script>", "a & b"]})
    html_text = table_html(df, caption="<b>caption</b>")
    assert "<script>" not in html_text and "<b>caption" not in html_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text and "a &amp; b" in html_text
    assert "<script>" not in mapping_html({"<script>": "<script>"}, caption="<script>")


def test_table_is_self_contained_and_wraps():
    html_text = table_html(pd.DataFrame({"reason": ["x" * 300], "path": ["/a/very/long/path" * 20]}))
    assert html_text.startswith('<table class="nexara-table"')
    assert "<style" not in html_text and "<script" not in html_text
    assert "overflow-wrap: anywhere" in html_text and "white-space: normal" in html_text
    assert "x" * 300 in html_text  # never truncated


def test_ci_companions_are_merged_into_one_column():
    df = pd.DataFrame({"model": ["a"], "accuracy": [0.935], "accuracy_ci_low": [0.901], "accuracy_ci_high": [0.962]})
    html_text = table_html(df)
    assert "accuracy (95% CI)" in html_text
    assert "93.5% (90.1% to 96.2%)" in html_text
    assert "CI low" not in html_text and "ci_low" not in html_text and len(_cells(html_text)) == 4


def test_empty_tables_and_mappings_say_none():
    assert table_html(pd.DataFrame(columns=["a", "b"])) == '<p class="nexara-empty"><em>none</em></p>'
    with_caption = table_html(pd.DataFrame(columns=["a"]), caption="unusable clips")
    assert "unusable clips" in with_caption and with_caption.endswith("<em>none</em></p>")
    assert "none" in mapping_html({}) and "none" in mapping_html(pd.Series([], dtype=float))


def test_index_columns_and_multiindex_headers():
    df = pd.DataFrame({("accuracy", "mean"): [0.9, 0.8]}, index=pd.Index(["a", "b"], name="model_name"))
    cells = _cells(table_html(df))
    assert cells[:2] == ["model name", "accuracy · mean"]
    assert cells[2:] == ["a", "90.0%", "b", "80.0%"]
    assert "model" not in table_html(pd.DataFrame({"x": [1]}))  # a default RangeIndex is not shown


def test_labels_show_class_names():
    df = pd.DataFrame({"clip": ["a", "b"], "y_true": [0, 1], "predicted": [1, 1], "prob": [0.73, 0.91]})
    cells = _cells(table_html(df))
    assert cells[4:] == ["a", "non-violent", "violent", "0.730", "b", "violent", "violent", "0.910"]


def _metrics_frame():
    rng = np.random.default_rng(0)
    columns = {}
    for metric in (
        "accuracy",
        "balanced_accuracy",
        "acc_violent",
        "acc_nonviolent",
        "roc_auc",
        "pr_auc",
        "f1_violent",
        "precision_violent",
    ):
        value = rng.uniform(0.8, 0.95, 4)
        columns.update({metric: value, f"{metric}_ci_low": value - 0.03, f"{metric}_ci_high": value + 0.03})
    columns.update(
        {
            "class_gap": rng.uniform(0, 0.1, 4),
            "ece": [1.2e-4, 3e-2, 5e-2, 1e-2],
            "threshold": [0.5, 0.45, 0.61, 0.5],
            "seconds_per_epoch": [12.5, 0.05, 130.0, 9.0],
            "n_clips": [1200, 1200, 1200, 1200],
        }
    )
    return pd.DataFrame(columns)


def test_a_wide_metrics_table_fits_the_page():
    df = _metrics_frame()
    assert df.shape == (4, 29)
    html_text = table_html(df)
    assert _widths(html_text) and all(w <= 1200 for w in _widths(html_text))
    assert "_ci_low" not in html_text and "e-0" not in html_text and "dtype" not in html_text
    assert "balanced accuracy (95% CI)" in html_text and "calibration error (ECE)" in html_text


def test_a_long_wide_table_is_split_into_parts_that_repeat_the_first_column():
    df = pd.DataFrame(
        {"clip": [f"clip_{i:03d}" for i in range(40)]}
        | {f"measurement_{j}": np.linspace(0, 1, 40) * 1000 + j for j in range(14)}
    )
    html_text = table_html(df, caption="clips")
    parts = html_text.split("</table>")[:-1]
    assert len(parts) > 1 and all(w <= 1200 for w in _widths(html_text))
    for i, part in enumerate(parts, 1):
        assert _cells(part)[0] == "clip" and "clip_039" in part
        assert f"clips (part {i} of {len(parts)})" in part
    assert sum(len(_cells(p)) for p in parts) == 41 * (15 + len(parts) - 1)


def test_mapping_html_uses_friendly_keys_and_the_series_name():
    html_text = mapping_html(pd.Series({"accuracy": 0.935, "chosen_by": "cv", "n_clips": 1200}, name="audit"))
    assert "<caption" in html_text and ">audit</caption>" in html_text
    assert _cells(html_text)[2:] == ["accuracy", "93.5%", "chosen by", "cv", "clips", "1,200"]
    thresholds = mapping_html(pd.Series({"val": 0.51234}, name="threshold (chosen on validation)"))
    assert "0.512" in thresholds


def test_importing_the_module_does_not_import_ipython():
    code = "import sys, nexara_lib.stages.tables; print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_install_display_formatters(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    if InteractiveShell.initialized():
        pytest.skip("an IPython shell is already running")
    assert install_display_formatters() is False
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path))
    shell = InteractiveShell.instance()
    try:
        assert install_display_formatters() is True
        fmt = shell.display_formatter.format
        series_html = fmt(pd.Series({"accuracy": 0.999}, name="audit"))[0]["text/html"]
        assert "dtype" not in series_html and "99.9%" in series_html and "audit" in series_html
        assert "nexara-table" in fmt(pd.DataFrame({"roc_auc": [0.9]}))[0]["text/html"]
        assert ">identity</p>" in fmt(["identity"])[0]["text/html"]
        assert ">no</p>" in fmt(False)[0]["text/html"]
        assert ">0.999</p>" in fmt(9.990e-01)[0]["text/html"] and ">0.5</p>" in fmt(np.float32(0.5))[0]["text/html"]
        assert ">some text</p>" in fmt("some text")[0]["text/html"]
        assert "clips" in fmt({"n_clips": 3})[0]["text/html"]
    finally:
        InteractiveShell.clear_instance()
