"""Reports: offline notebook HTML, code-hidden stakeholder copy, headline figures, index page.

Notebooks here are built with outputs already in place (no kernel), so the
file runs in seconds.
"""

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from nexara_lib.io import write_json_atomic
from nexara_lib.run.index_page import format_figure, write_index
from nexara_lib.run.reports import render_reports
from nexara_lib.stages.headline import record_headline

EVIL = "<script>alert(1)</script>"
# A 1x1 PNG: the report must embed it as a data URI.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()


class _Assets(HTMLParser):
    """Collects every URL a browser would fetch for scripts and stylesheets, and all script tags."""

    def __init__(self):
        super().__init__()
        self.urls, self.scripts = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
            if attrs.get("src"):
                self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def _assets(page: str) -> _Assets:
    parser = _Assets()
    parser.feed(page)
    return parser


def _is_remote(url: str) -> bool:
    return url.strip().lower().startswith(("http:", "https:", "//"))


@pytest.fixture()
def executed_notebook(tmp_path) -> Path:
    """A notebook as papermill leaves it after a failure: parameters, outputs, a widget, an ANSI traceback."""
    cells = [
        new_markdown_cell("# Audit\nInline math $a^2 + b^2$ and a [link](https://example.org)."),
        new_code_cell("run_dir = ''", metadata={"tags": ["parameters"]}),
        new_code_cell("run_dir = '/injected/run'\nsynthetic_clips = 4", metadata={"tags": ["injected-parameters"]}),
        new_code_cell(
            "secret_code_token = 41 + 1\nprint('visible printed output')",
            execution_count=1,
            outputs=[
                new_output("stream", name="stdout", text="progress 10%\rprogress 100%\nvisible printed output\n"),
                new_output("stream", name="stderr", text="I0000 tensorflow start-up chatter\n"),
                new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
                new_output(
                    "display_data",
                    data={
                        "text/html": '<script src="https://cdn.example.com/plot.js"></script><b>html table output</b>'
                    },
                ),
            ],
        ),
        new_code_cell(
            "slider_widget_code",
            execution_count=2,
            outputs=[
                new_output(
                    "display_data",
                    data={
                        "application/vnd.jupyter.widget-view+json": {
                            "model_id": "abc",
                            "version_major": 2,
                            "version_minor": 0,
                        },
                        "text/plain": "IntSlider(value=3)",
                    },
                ),
                new_output(
                    "display_data",
                    data={
                        "application/vnd.jupyter.widget-view+json": {
                            "model_id": "bar",
                            "version_major": 2,
                            "version_minor": 0,
                        },
                        "text/plain": "probe: 100%|##########| 240/240 [00:01<00:00, 324.0it/s]",
                    },
                ),
            ],
        ),
        new_code_cell(
            "raise ValueError('boom')",
            execution_count=3,
            outputs=[
                new_output(
                    "error",
                    ename="ValueError",
                    evalue="boom <b>",
                    traceback=[
                        "\x1b[0;31m---------------------------------\x1b[0m",
                        "\x1b[0;31mValueError\x1b[0m: boom <b>",
                    ],
                )
            ],
        ),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "nexara", "display_name": "Python (nexara)", "language": "python"}
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2, "version_minor": 0}
    }
    path = tmp_path / "run" / "notebooks" / "01_audit.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def reports(executed_notebook):
    full, stakeholder = render_reports(executed_notebook, executed_notebook.parent.parent / "reports")
    return full.read_text(encoding="utf-8"), stakeholder.read_text(encoding="utf-8"), full, stakeholder


def test_report_paths_and_names(reports, executed_notebook):
    _, _, full, stakeholder = reports
    assert full == executed_notebook.parent.parent / "reports" / "01_audit.full.html"
    assert stakeholder == executed_notebook.parent.parent / "reports" / "01_audit.html"


def test_reports_load_nothing_from_the_network(reports):
    for page in reports[:2]:
        assets = _assets(page)
        remote = [u for u in assets.urls if _is_remote(u)]
        assert remote == [], f"remote scripts/styles in report: {remote}"
        for cdn in ("cdnjs.cloudflare.com", "unpkg.com", "cdn.example.com", "require.min.js", "mathjax"):
            assert cdn not in page.lower()
        assert "html table output" in page  # only the remote <script> of that output was dropped
        assert "https://example.org" in page  # plain links are not assets and stay


def test_images_are_embedded(reports):
    for page in reports[:2]:
        assert f"data:image/png;base64,{PNG}" in page


def test_stakeholder_copy_hides_code_prompts_and_parameters(reports):
    full, stakeholder = reports[:2]
    assert "secret_code_token" in full and "secret_code_token" not in stakeholder
    assert "slider_widget_code" not in stakeholder
    assert "injected-parameters" in full and "injected-parameters" not in stakeholder
    assert "/injected/run" not in stakeholder
    # Prompt classes also appear in the inlined CSS: look at elements only.
    assert 'class="jp-InputPrompt' in full and 'class="jp-InputPrompt' not in stakeholder
    assert 'class="jp-OutputPrompt' in full and 'class="jp-OutputPrompt' not in stakeholder
    assert "visible printed output" in stakeholder
    assert "start-up chatter" in full and "start-up chatter" not in stakeholder  # stderr logs: full report only
    assert "Audit" in stakeholder  # markdown stays


def test_tracebacks_are_readable_and_progress_bars_collapsed(reports):
    for page in reports[:2]:
        assert "\x1b" not in page and "[0;31m" not in page
        assert "ValueError" in page and "boom &lt;b&gt;" in page and "boom <b>" not in page
        assert "progress 100%" in page and "progress 10%" not in page


def test_widgets_become_a_note(reports):
    full, stakeholder = reports[:2]
    for page in (full, stakeholder):
        assert "interactive widget" in page
        assert "widget-state+json" not in page
        assert page.count("interactive widget: open") == 1
    # a finished progress bar keeps its final text instead of the note; the stakeholder copy shows its count
    assert "240/240" in full
    assert "probe: 240 of 240" in stakeholder and "240/240" not in stakeholder


def test_render_reports_needs_the_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ipynb"):
        render_reports(tmp_path / "missing.ipynb", tmp_path / "reports")


def test_record_headline_merges_sections_and_keys(tmp_path):
    record_headline(tmp_path, "04_diagnostics", {"test accuracy": {"value": 0.93, "ci": [0.90, 0.96]}})
    record_headline(tmp_path, "04_diagnostics", {"gap": np.float32(0.25), "auc": float("nan")})
    path = record_headline(tmp_path, "05_tta", {"tta delta": 0.012})
    data = json.loads(path.read_text())  # strict JSON: NaN stored as null
    assert path == tmp_path / "artifacts" / "headline.json"
    assert data == {
        "04_diagnostics": {"test accuracy": {"value": 0.93, "ci": [0.90, 0.96]}, "gap": 0.25, "auc": None},
        "05_tta": {"tta delta": 0.012},
    }
    assert list(tmp_path.joinpath("artifacts").iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize(
    "section, figures, error",
    [
        ("", {"a": 1}, ValueError),
        ("04", ["not", "a", "dict"], TypeError),
        ("04", {"ci only": {"ci": [0.1, 0.2]}}, ValueError),
        ("04", {1: 0.5}, TypeError),
    ],
)
def test_record_headline_rejects_bad_input(tmp_path, section, figures, error):
    with pytest.raises(error, match="record_headline"):
        record_headline(tmp_path, section, figures)


@pytest.mark.parametrize(
    "name, figure, text",
    [
        ("test accuracy", {"value": 0.93, "ci": [0.9, 0.955]}, "93.0% (95% CI 90.0% to 95.5%)"),
        ("auc", 0.8712, "87.1%"),
        ("ensemble delta", 0.021, "+2.1 pp"),
        ("tta change", {"value": -0.004}, "-0.4 pp"),
        ("clips", 2000, "2,000"),
        ("latency ms", 12.345, "12.345"),
        ("threshold", {"value": 0.42, "format": "number"}, "0.42"),
        ("best model", "hybrid", "hybrid"),
        ("auc", None, "n/a"),
    ],
)
def test_format_figure(name, figure, text):
    assert format_figure(name, figure) == text


def _fake_run(tmp_path) -> Path:
    run_dir = tmp_path / "my-run"
    (run_dir / "reports").mkdir(parents=True)
    (run_dir / "notebooks").mkdir()
    for stem in ("01_audit", "02_features"):
        (run_dir / "reports" / f"{stem}.html").write_text("x")
        (run_dir / "reports" / f"{stem}.full.html").write_text("x")
        (run_dir / "notebooks" / f"{stem}.ipynb").write_text("{}")
    (run_dir / "params.yaml").write_text("seed: 1\n")

    def entry(stem, status, duration, error=None):
        return {
            "notebook": f"{stem}.ipynb",
            "status": status,
            "duration_s": duration,
            "error": error,
            "executed": f"notebooks/{stem}.ipynb",
            "reports": {"full": f"reports/{stem}.full.html", "stakeholder": f"reports/{stem}.html"},
        }

    write_json_atomic(
        run_dir / "run.json",
        {
            "run_name": "my-run",
            "status": "failed",
            "started_at": "2025-01-01T10:00:00+00:00",
            "finished_at": "2025-01-01T10:05:00+00:00",
            "duration_s": 300.0,
            "param_files": ["/p/base.yaml", f"/p/{EVIL}.yaml"],
            "overrides": {"seed": EVIL},
            "git": {"commit": "0123456789abcdef", "dirty": True},
            "versions": {"python": "3.11.0", "evil": EVIL},
            "notebooks": {
                "01_audit": entry("01_audit", "ok", 12.5),
                "02_features": entry("02_features", "failed", 75.0, error=f"ValueError: {EVIL}"),
                EVIL: {"notebook": EVIL, "status": "not run"},
            },
        },
    )
    record_headline(run_dir, "02_features", {"clips": 4})
    record_headline(run_dir, "01_audit", {"test accuracy": {"value": 0.93, "ci": [0.9, 0.96]}, EVIL: EVIL})
    record_headline(run_dir, EVIL, {"note": {"value": EVIL, "format": "text"}})
    return run_dir


def test_index_escapes_every_string_from_data(tmp_path):
    page = write_index(_fake_run(tmp_path)).read_text(encoding="utf-8")
    assert "<script" not in page.lower()  # no JavaScript at all, injected or ours
    assert _assets(page).scripts == 0
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_index_content_and_links(tmp_path):
    run_dir = _fake_run(tmp_path)
    index = write_index(run_dir)
    page = index.read_text(encoding="utf-8")
    assert index == run_dir / "reports" / "index.html"
    assert "my-run" in page and "0123456789abcdef" in page and "uncommitted" in page
    assert "93.0% (95% CI 90.0% to 96.0%)" in page and "12.5 s" in page and "75.0 s" in page
    assert "not run" in page and "failed" in page and "base.yaml" in page and "/p/" not in page  # no machine paths
    assert page.index("01 audit</h3>") < page.index("02 features</h3>")  # stages in notebook order

    class Links(HTMLParser):
        hrefs = []

        def handle_starttag(self, tag, attrs):
            if tag == "a":
                self.hrefs.append(dict(attrs)["href"])

    Links().feed(page)
    expected = {
        "01_audit.html",
        "01_audit.full.html",
        "02_features.html",
        "02_features.full.html",
        "../notebooks/01_audit.ipynb",
        "../params.yaml",
        "../run.json",
    }
    assert expected <= set(Links.hrefs)
    for href in Links.hrefs:  # relative and pointing at files that exist
        assert not _is_remote(href) and not href.startswith("/")
        assert (index.parent / href).resolve().is_file(), href
    assert [u for u in _assets(page).urls if _is_remote(u)] == []


def test_index_without_run_record(tmp_path):
    page = write_index(tmp_path / "bare").read_text(encoding="utf-8")
    assert "bare" in page and "No step has run yet" in page and "has not finished in this run" in page
