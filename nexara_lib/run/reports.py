"""HTML reports of executed notebooks, headline figures, and the run's index page.

Every page here must open from a laptop with no network (a copied run folder,
an air-gapped GPU box), so nothing may load from a CDN:

* notebook reports use nbconvert's ``lab`` template through a small derived
  template that drops the require.js, MathJax, Mermaid and widget-manager
  script blocks (all of which point at cdnjs/unpkg); images are embedded;
  as a safety net any remaining ``<script src>``/``<link href>`` pointing at
  a remote URL (e.g. from an HTML output) is removed after rendering;
* the index page is generated here with inline CSS and no JavaScript.
"""
from __future__ import annotations

import copy
import html
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

import jinja2
import nbformat

from nexara_lib.io import read_json, write_text_atomic
from nexara_lib.layout import RunLayout

# Cells a stakeholder has nothing to read in: parameter assignments only.
STAKEHOLDER_DROP_TAGS = {"injected-parameters", "parameters"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_PROGRESS_TEXT = re.compile(r"\d+%\|")
WIDGET_NOTE = "[interactive widget: open the notebook in JupyterLab to use it]"

# Derived from nbconvert's lab template; the emptied blocks are the only ones
# that load remote JavaScript (require.js, MathJax, Mermaid, widget manager).
_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
_OFFLINE_TEMPLATE_NAME = "nexara_offline.html.j2"
_QUIET_NBCONVERT_LOG = logging.getLogger("nexara_lib.run.reports.nbconvert")
_QUIET_NBCONVERT_LOG.setLevel(logging.ERROR)
_REMOTE_URL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)


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


def _format_number(value: Any, style: str) -> str:
    number = _as_float(value)
    if number is None:
        return "n/a" if value is None else str(value)
    if not math.isfinite(number):
        return "n/a"
    if style == "percent":
        return f"{100 * number:.1f}%"
    if style == "delta":
        return f"{100 * number:+.1f} pp"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{number:.4g}"


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


# --- notebook reports -------------------------------------------------------

def _without_widgets(nb: nbformat.NotebookNode) -> None:
    """Replace live widget views by a note: their JavaScript manager only exists on a CDN."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                # tqdm's notebook bar leaves its final state as text ("x: 100%|███| 240/240 ..."): keep that
                if not _PROGRESS_TEXT.search(str(data.get("text/plain", ""))):
                    data["text/plain"] = WIDGET_NOTE


def _without_stderr(nb: nbformat.NotebookNode) -> None:
    """Drop stderr streams (library logs, TensorFlow start-up noise) from the stakeholder copy;
    the full report keeps them, and errors are ``error`` outputs, which stay."""
    for cell in nb.cells:
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"]
                               if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]


def _strip_remote_assets(page: str) -> str:
    """Drop ``<script src>`` / ``<link href>`` tags that point at another host."""
    from bs4 import BeautifulSoup  # an nbconvert dependency

    soup = BeautifulSoup(page, features="html.parser")
    removed = 0
    for tag in soup.find_all(["script", "link"]):
        url = tag.get("src") if tag.name == "script" else tag.get("href")
        if url and _REMOTE_URL.match(url):
            tag.decompose()
            removed += 1
    return str(soup) if removed else page


def _exporter(stakeholder: bool):
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({_OFFLINE_TEMPLATE_NAME: _OFFLINE_TEMPLATE})],
        template_file=_OFFLINE_TEMPLATE_NAME,
        embed_images=True,
        # Belt and braces: even if a block above is re-enabled, nothing points off-host.
        mathjax_url="", require_js_url="", widget_renderer_url="",
        # nbconvert warns about every figure without alt text; matplotlib output never has it.
        log=_QUIET_NBCONVERT_LOG,
    )
    if stakeholder:
        exporter.exclude_input = True
        exporter.exclude_input_prompt = True
        exporter.exclude_output_prompt = True
    return exporter


def render_notebook_html(nb: nbformat.NotebookNode, stakeholder: bool, title: str) -> str:
    """Render one notebook to a self-contained, offline HTML page.

    Args:
        nb: the executed notebook (not modified).
        stakeholder: hide code, prompts and the parameter cells.
        title: the page title.
    """
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    nb = copy.deepcopy(nb)
    nb.metadata["title"] = title
    if stakeholder:
        nb.cells = [c for c in nb.cells if not STAKEHOLDER_DROP_TAGS & set(c.get("metadata", {}).get("tags", []))]
        _without_stderr(nb)
    _without_widgets(nb)
    # Progress bars write '\r'-separated updates; keep only the final state of each line.
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    page, _ = _exporter(stakeholder).from_notebook_node(nb, resources={"metadata": {"name": title}})
    return _strip_remote_assets(page)


def report_paths(notebook_name: str, reports_dir: str | Path) -> tuple[Path, Path]:
    """``(full, stakeholder)`` report paths of a notebook: ``<stem>.full.html`` and ``<stem>.html``."""
    stem = Path(notebook_name).stem
    return Path(reports_dir) / f"{stem}.full.html", Path(reports_dir) / f"{stem}.html"


def render_reports(executed_notebook_path: str | Path, reports_dir: str | Path) -> tuple[Path, Path]:
    """Write the full report and the code-hidden stakeholder report of an executed notebook.

    Works for partially executed (failed) notebooks too: the error output is
    rendered with its ANSI colours converted to HTML.

    Returns:
        ``(full_html_path, stakeholder_html_path)``.
    """
    executed = Path(executed_notebook_path)
    if not executed.is_file():
        raise FileNotFoundError(f"cannot render reports: executed notebook {executed} does not exist")
    nb = nbformat.read(executed, as_version=4)
    full_path, stakeholder_path = report_paths(executed.name, reports_dir)
    full_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(full_path, render_notebook_html(nb, False, f"{executed.stem} (with code)"))
    write_text_atomic(stakeholder_path, render_notebook_html(nb, True, executed.stem))
    return full_path, stakeholder_path


# --- index page --------------------------------------------------------------

_INDEX_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 60em; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.3em 0.8em; text-align: left;
       border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f6f6f6; } .meta { color: #666; } code { background: #f4f4f4; padding: 0 0.2em; }
.status { font-weight: bold; padding: 0.1em 0.5em; border-radius: 0.3em; white-space: nowrap; }
.ok { background: #d8f5d8; color: #14621b; } .failed { background: #fbd9d9; color: #8b1010; }
.running { background: #fff1c2; color: #6b5200; } .not-run, .pending { background: #eee; color: #555; }
.error { color: #8b1010; font-family: monospace; white-space: pre-wrap; }
"""


def _e(value: Any) -> str:
    """HTML-escape any value from data (quotes included: it may land in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def _href(target: str | Path, reports_dir: Path) -> str:
    """A relative, URL-quoted, HTML-escaped link from the reports folder to ``target``."""
    rel = os.path.relpath(Path(target), reports_dir).replace(os.sep, "/")
    return _e(quote(rel))


def _format_duration(seconds: Any) -> str:
    number = _as_float(seconds)
    if number is None:
        return ""
    minutes, secs = divmod(int(round(number)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{number:.1f}s")


def _notebook_rows(run: Mapping, run_dir: Path, reports_dir: Path) -> list[str]:
    rows = []
    for name, entry in (run.get("notebooks") or {}).items():
        entry = entry if isinstance(entry, Mapping) else {}
        status = str(entry.get("status") or "not run")
        links = []
        for label, key in (("report", "stakeholder"), ("with code", "full")):
            target = (entry.get("reports") or {}).get(key)
            if target and (run_dir / target).is_file():
                links.append(f'<a href="{_href(run_dir / target, reports_dir)}">{label}</a>')
        executed = entry.get("executed")
        if executed and (run_dir / executed).is_file():
            links.append(f'<a href="{_href(run_dir / executed, reports_dir)}">.ipynb</a>')
        error = entry.get("error")
        error_html = f'<div class="error">{_e(error)}</div>' if error else ""
        css = re.sub(r"[^a-z-]", "", status.lower().replace(" ", "-"))
        rows.append(f'<tr><td>{_e(name)}{error_html}</td><td><span class="status {css}">{_e(status)}</span></td>'
                    f'<td>{_e(_format_duration(entry.get("duration_s")))}</td><td>{" &middot; ".join(links)}</td></tr>')
    return rows


def _headline_html(headline: Mapping, order: list[str]) -> list[str]:
    if not headline:
        return ["<p class=\"meta\">No headline figures were published.</p>"]
    # Sections in notebook order first, then any others in the order they were written.
    sections = [s for s in order if s in headline] + [s for s in headline if s not in order]
    parts = []
    for section in sections:
        figures = headline[section]
        parts.append(f"<h3>{_e(section)}</h3>")
        if not isinstance(figures, Mapping):
            parts.append(f"<p>{_e(figures)}</p>")
            continue
        rows = "".join(f"<tr><th>{_e(name)}</th><td>{_e(format_figure(name, value))}</td></tr>"
                       for name, value in figures.items())
        parts.append(f"<table>{rows}</table>")
    return parts


def write_index(run_dir: str | Path) -> Path:
    """Write ``reports/index.html``: run status, links to every report, headline figures, provenance.

    Reads ``run.json`` and ``artifacts/headline.json`` (either may be missing).
    The page is one file with inline CSS and no JavaScript; every value taken
    from data is HTML-escaped.

    Returns:
        The path of ``index.html``.
    """
    run_dir = Path(run_dir)
    reports_dir = run_dir / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    run = read_json(run_dir / "run.json", {}) or {}
    headline = read_json(RunLayout(run_dir).headline, {}) or {}
    name = run.get("run_name") or run_dir.name
    git = run.get("git") or {}
    commit = git.get("commit") or "unknown (not a git checkout)"
    if git.get("dirty"):
        commit += " (with uncommitted changes)"
    status = str(run.get("status") or "unknown")
    css = re.sub(r"[^a-z-]", "", status.lower())

    body = [
        f"<h1>{_e(name)}</h1>",
        f'<p><span class="status {css}">{_e(status)}</span> <span class="meta">started {_e(run.get("started_at"))}'
        f' &middot; finished {_e(run.get("finished_at") or "-")}'
        f' &middot; {_e(_format_duration(run.get("duration_s")))}</span></p>',
        "<h2>Notebooks</h2>",
        "<table><tr><th>notebook</th><th>status</th><th>duration</th><th>reports</th></tr>",
        *_notebook_rows(run, run_dir, reports_dir),
        "</table>",
        "<h2>Headline figures</h2>",
        *_headline_html(headline, [Path(n).stem for n in (run.get("notebooks") or {})]),
        "<h2>Provenance</h2>",
        "<table>",
        "<tr><th>parameter files</th><td>"
        + "<br>".join(f"<code>{_e(f)}</code>" for f in run.get("param_files") or []) + "</td></tr>",
    ]
    if run.get("overrides"):
        body.append("<tr><th>overrides</th><td>" + "<br>".join(
            f"<code>{_e(k)}={_e(v)}</code>" for k, v in run["overrides"].items()) + "</td></tr>")
    body.append(f"<tr><th>git commit</th><td><code>{_e(commit)}</code></td></tr>")
    versions = run.get("versions") or {}
    if versions:
        body.append("<tr><th>versions</th><td>" + ", ".join(
            f"{_e(k)} {_e(v)}" for k, v in versions.items() if v is not None) + "</td></tr>")
    links = [f'<a href="{_href(run_dir / f, reports_dir)}">{_e(f)}</a>'
             for f in ("params.yaml", "run.json") if (run_dir / f).is_file()]
    if links:
        body.append(f"<tr><th>files</th><td>{' &middot; '.join(links)}</td></tr>")
    body.append("</table>")

    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(name)} - NexaraVision run</title>\n<style>{_INDEX_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
    path = reports_dir / "index.html"
    return write_text_atomic(path, page)
