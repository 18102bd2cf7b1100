"""The run's index page (``reports/index.html``) and how headline figures are written on it.

One offline file with inline CSS and no JavaScript; every value taken from data is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nexara_lib.io import read_json, write_text_atomic
from nexara_lib.layout import RunLayout
from nexara_lib.run.report_copy import shorten_paths
from nexara_lib.run.summary_box import stage_title, summary_box_html
from nexara_lib.stages.formats import format_number, format_seconds

# --- headline figures -------------------------------------------------------


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _guess_format(name: str, value: Any) -> str:
    number = _as_float(value)
    if number is None or isinstance(value, int):
        return "text" if number is None else "number"
    if any(word in name.lower() for word in ("delta", "change", "gain", "improvement")):
        return "delta"
    return "percent" if -1.0 <= number <= 1.0 else "number"


# How each headline style is written: by the display tables' rules (one owner for number formats).
_STYLE_KIND = {"percent": "percent", "delta": "delta", "number": None, "seconds": "duration"}


def _format_number(value: Any, style: str) -> str:
    number = _as_float(value)
    if number is None:
        return "n/a" if value is None else str(value)
    if not math.isfinite(number):
        return "n/a"
    return (
        f"{value:,}" if isinstance(value, int) and style == "number" else format_number(number, _STYLE_KIND.get(style))
    )


def format_figure(name: str, figure: Any) -> str:
    """One headline figure as display text (not escaped), e.g. ``'93.0% (95% CI 90.0% to 96.0%)'``."""
    if figure is None or (isinstance(figure, Mapping) and figure.get("value") is None):
        return "n/a"  # e.g. an AUC that was NaN (one class only) and stored as null
    if isinstance(figure, Mapping):
        value = figure.get("value")
        style = figure.get("format") or _guess_format(name, value)
        text = _format_number(value, style) if style != "text" else str(value)
        ci = figure.get("ci")
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            low, high = (_format_number(v, style) for v in ci)
            text += f" (95% CI {low} to {high})"
        return text
    if isinstance(figure, list):
        return ", ".join(str(v) for v in figure)
    style = _guess_format(name, figure)
    return str(figure) if style == "text" else _format_number(figure, style)


# --- index page --------------------------------------------------------------


def _e(value: Any) -> str:
    """HTML-escape any value from data (quotes included: it may land in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def _href(target: str | Path, reports_dir: Path) -> str:
    """A relative, URL-quoted, HTML-escaped link from the reports folder to ``target``."""
    rel = os.path.relpath(Path(target), reports_dir).replace(os.sep, "/")
    return _e(quote(rel))


def _seconds(seconds: Any) -> str:
    number = _as_float(seconds)
    return format_seconds(number) if number is not None and math.isfinite(number) else ""


GLOSSARY = (
    (
        "Training, validation and test clips",
        "The clips are split three ways, keeping clips of one recording together. "
        "The model learns from training clips; validation clips tune it (when to stop, the threshold, which options "
        "help); test clips are used once, at the end, so the test result is an honest estimate on unseen clips.",
    ),
    (
        "Accuracy",
        "The share of clips the model labels correctly. Balanced accuracy is the average of the accuracy "
        "on violent clips and on non-violent clips, so the larger class cannot hide mistakes on the smaller one.",
    ),
    (
        "95% CI (confidence interval)",
        "The range the true result lies in with 95% confidence, given how many clips "
        "were tested: fewer clips, wider range. A difference whose interval includes zero is not significant.",
    ),
    ("pp (percentage points)", "The difference between two percentages: from 90% to 92% is +2 pp."),
    (
        "Threshold",
        "The model gives each clip a probability of being violent; clips at or above the threshold are "
        "labelled violent. It is chosen on validation clips, never on test clips.",
    ),
    (
        "ROC AUC",
        "How well the probabilities separate the two classes at every threshold: 100% is perfect, 50% is guessing.",
    ),
    (
        "Calibration error (ECE)",
        "How far the probabilities are from the observed frequencies: 0% means a 70% "
        "probability is right 70% of the time.",
    ),
    (
        "McNemar test, p-value",
        "A test of whether two models that labelled the same clips really differ; a p-value "
        "below 0.05 is called significant.",
    ),
    (
        "Test-time augmentation (TTA)",
        "Scoring each clip several times in altered views (mirrored, shifted) and "
        "averaging. It costs time; it is worth it only if it helps significantly.",
    ),
    ("Ensemble", "Several models whose probabilities are combined; worth it only if it beats the best single model."),
    (
        "Recipe",
        "The training settings (model size, regularization, augmentation, loss). The recipe comparison trains "
        "each one with several seeds and compares them on validation clips.",
    ),
    (
        "k-of-n confirmation",
        "The detector alarms only when k of the last n time windows look violent, trading a "
        "little delay for fewer false alarms.",
    ),
    (
        "Export (float32, float16, int8)",
        "The trained model converted for phones and edge boxes; float16 and int8 "
        "are smaller and faster, and are checked to give the same answers within a tolerance.",
    ),
)

# Figures shown on the index (file stem under artifacts/figures, caption, alt text), where they exist.
INDEX_FIGURES = (
    (
        "per_class_accuracy",
        "Test clips labelled correctly, overall and per class, with 95% confidence intervals.",
        "Bar chart of test accuracy overall, on violent clips and on non-violent clips, with 95% confidence intervals",
    ),
    (
        "confusion_test",
        "Confusion matrix on the test clips: how many clips of each true class were labelled violent or non-violent.",
        "Confusion matrix of the test clips at the operating threshold",
    ),
)

_INDEX_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 60em; padding: 0 1em; color: #222; line-height: 1.45; overflow-wrap: anywhere; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; } h3 { margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0; max-width: 100%; } td, th { padding: 0.3em 0.8em;
       text-align: left; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; } .meta { color: #666; } code { background: #f4f4f4; padding: 0 0.2em; }
.status { font-weight: bold; padding: 0.1em 0.5em; border-radius: 0.3em; white-space: nowrap; font-size: 0.85em; }
.ok { background: #d8f5d8; color: #14621b; } .failed { background: #fbd9d9; color: #8b1010; }
.running, .retried { background: #fff1c2; color: #6b5200; }
.not-run, .pending, .interrupted, .kept { background: #eee; color: #555; }
.error { color: #8b1010; white-space: pre-wrap; } .verdict { font-style: italic; }
.figures { display: flex; flex-wrap: wrap; gap: 1.2em; }
.figures figure { flex: 1 1 320px; max-width: 520px; margin: 0.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } dt { font-weight: 600; margin-top: 0.6em; } dd { margin-left: 1.2em; }
"""


def _status_badge(status: str) -> str:
    css = re.sub(r"[^a-z-]", "", status.lower().replace(" ", "-"))
    return f'<span class="status {css}">{_e(status)}</span>'


def _stage_html(
    stem: str, entry: Mapping, figures: Any, summary: Mapping | None, run_dir: Path, reports_dir: Path
) -> list[str]:
    """One stage on the index: title, status and time, its result and verdict, links, its headline figures."""
    status = str(entry.get("status") or "not run")
    links = []
    for label, key in (("Read the report", "stakeholder"), ("the report with code", "full")):
        target = (entry.get("reports") or {}).get(key)
        if target and (run_dir / target).is_file():
            links.append(f'<a href="{_href(run_dir / target, reports_dir)}">{label}</a>')
    executed = entry.get("executed")
    if executed and (run_dir / executed).is_file():
        links.append(f'<a href="{_href(run_dir / executed, reports_dir)}">the notebook</a>')
    took = _seconds(entry.get("duration_s"))
    parts = [
        f"<h3>{_e(stage_title(stem))}</h3>",
        f'<p>{_status_badge(status)} <span class="meta">{_e(took)}</span>'
        + (f" &middot; {' &middot; '.join(links)}" if links else "")
        + "</p>",
    ]
    if entry.get("error"):
        parts.append(f'<p class="error">This step failed: {_e(shorten_paths(entry["error"], run_dir))}</p>')
    if summary:
        parts.append(f'<p>{_e(summary["result"])}</p><p class="verdict">{_e(summary["verdict"])}</p>')
    if isinstance(figures, Mapping) and figures:
        rows = "".join(
            f"<tr><th>{_e(name)}</th><td>{_e(format_figure(name, value))}</td></tr>"
            for name, value in figures.items()
            if name != "verdict"
        )
        parts.append(f"<details><summary>Key figures</summary><table>{rows}</table></details>")
    return parts


def _figures_html(run_dir: Path) -> list[str]:
    """The index's figures, embedded (the page stays one file that works when copied alone)."""
    parts = []
    for stem, caption, alt in INDEX_FIGURES:
        path = RunLayout(run_dir).figures / f"{stem}.png"
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
    return ['<div class="figures">', *parts, "</div>"] if parts else []


def write_index(run_dir: str | Path) -> Path:
    """Write ``reports/index.html``: the summary box, each stage in words with its links and figures, the
    key figures as pictures, a glossary, and provenance (parameter files, commit, versions).

    Reads ``run.json``, ``artifacts/headline.json`` and ``artifacts/summaries.json`` (any may be missing).
    The page is one file with inline CSS and no JavaScript; every value taken from data is HTML-escaped.

    Returns:
        The path of ``index.html``.
    """
    run_dir = Path(run_dir)
    reports_dir = run_dir / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    run = read_json(run_dir / "run.json", {}) or {}
    layout = RunLayout(run_dir)
    headline = read_json(layout.headline, {}) or {}
    summaries = read_json(layout.summaries, {}) or {}
    name = run.get("run_name") or run_dir.name
    git = run.get("git") or {}
    commit = git.get("commit") or "unknown (not a git checkout)"
    if git.get("dirty"):
        commit += " (with uncommitted changes)"
    status = str(run.get("status") or "unknown")
    notebooks = run.get("notebooks") or {}
    stems = [Path(n).stem for n in notebooks] + [s for s in headline if s not in {Path(n).stem for n in notebooks}]

    body = [
        f"<h1>Violence detection run &ldquo;{_e(name)}&rdquo;</h1>",
        f'<p>{_status_badge(status)} <span class="meta">started {_e(run.get("started_at"))}'
        f" &middot; finished {_e(run.get('finished_at') or '-')}"
        f" &middot; {_e(_seconds(run.get('duration_s')))}</span></p>",
        summary_box_html(run_dir, None, index_href=None),
        *_figures_html(run_dir),
        "<h2>Step by step</h2>",
    ]
    for stem in stems:
        entry: Any = next((e for n, e in notebooks.items() if Path(n).stem == stem), {})  # run.json: checked below
        body += _stage_html(
            stem,
            entry if isinstance(entry, Mapping) else {},
            headline.get(stem),
            summaries.get(stem),
            run_dir,
            reports_dir,
        )
    if not stems:
        body.append('<p class="meta">No step has run yet.</p>')
    body += [
        "<h2>Words used in these reports</h2>",
        "<dl>",
        *(f"<dt>{_e(term)}</dt><dd>{_e(meaning)}</dd>" for term, meaning in GLOSSARY),
        "</dl>",
        "<h2>How this run was made</h2>",
        "<table>",
        "<tr><th>parameter files</th><td>"
        + "<br>".join(f"<code>{_e(Path(str(f)).name)}</code>" for f in run.get("param_files") or [])
        + "</td></tr>",
    ]
    if run.get("overrides"):
        body.append(
            "<tr><th>overrides</th><td>"
            + "<br>".join(f"<code>{_e(k)}={_e(shorten_paths(v, run_dir))}</code>" for k, v in run["overrides"].items())
            + "</td></tr>"
        )
    body.append(f"<tr><th>code version (git commit)</th><td><code>{_e(commit)}</code></td></tr>")
    versions = run.get("versions") or {}
    if versions:
        body.append(
            "<tr><th>software versions</th><td>"
            + ", ".join(f"{_e(k)} {_e(v)}" for k, v in versions.items() if v is not None)
            + "</td></tr>"
        )
    links = [
        f'<a href="{_href(run_dir / f, reports_dir)}">{_e(f)}</a>'
        for f in ("params.yaml", "run.json")
        if (run_dir / f).is_file()
    ]
    if links:
        body.append(f"<tr><th>files</th><td>{' &middot; '.join(links)}</td></tr>")
    body.append("</table>")

    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(name)} - NexaraVision run</title>\n<style>{_INDEX_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    path = reports_dir / "index.html"
    return write_text_atomic(path, page)
