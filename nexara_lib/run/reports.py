"""HTML reports of executed notebooks: the full copy and the code-hidden stakeholder copy.

Every page here must open from a laptop with no network (a copied run folder,
an air-gapped GPU box), so nothing may load from a CDN:

* notebook reports use nbconvert's ``lab`` template through a small derived
  template that drops the require.js, MathJax, Mermaid and widget-manager
  script blocks (all of which point at cdnjs/unpkg); images are embedded;
  as a safety net any remaining ``<script src>``/``<link href>`` pointing at
  a remote URL (e.g. from an HTML output) is removed after rendering;
* the index page (``index_page``) is generated with inline CSS and no JavaScript.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import jinja2
import nbformat

from nexara_lib.io import write_text_atomic
from nexara_lib.run.report_copy import copy_problems, quiet_full_copy, stakeholder_outputs
from nexara_lib.run.summary_box import stage_title, summary_box_html

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


# --- notebook reports -------------------------------------------------------


def _without_widgets(nb: nbformat.NotebookNode) -> None:
    """Replace live widget views by a note: their JavaScript manager only exists on a CDN."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                # tqdm's notebook bar leaves a state as text ("x: 100%|███| 240/240 ..."): keep that. The
                # stakeholder copy has already turned bars into their final count (report_copy).
                if not _PROGRESS_TEXT.search(str(data.get("text/plain", ""))):
                    data["text/plain"] = WIDGET_NOTE


_NO_ALT = "No description has been provided for this image"


def _finish_page(page: str, title: str) -> str:
    """One pass over the rendered page: drop ``<script src>`` / ``<link href>`` tags that point at another host,
    and describe each figure nbconvert left with its placeholder alt text by the section it is in."""
    from bs4 import BeautifulSoup  # an nbconvert dependency

    soup = BeautifulSoup(page, features="html.parser")
    changed = False
    for tag in soup.find_all(["script", "link"]):
        url = tag.get("src") if tag.name == "script" else tag.get("href")
        if isinstance(url, str) and _REMOTE_URL.match(url):
            tag.decompose()
            changed = True
    for image in soup.find_all("img", alt=_NO_ALT):
        heading = image.find_previous(["h1", "h2", "h3"])
        section = heading.get_text(" ", strip=True).rstrip("¶").strip() if heading else title
        image["alt"] = f"Figure: {section}"
        changed = True
    return str(soup) if changed else page


def _exporter(stakeholder: bool):
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({_OFFLINE_TEMPLATE_NAME: _OFFLINE_TEMPLATE})],
        template_file=_OFFLINE_TEMPLATE_NAME,
        embed_images=True,
        # Belt and braces: even if a block above is re-enabled, nothing points off-host.
        mathjax_url="",
        require_js_url="",
        widget_renderer_url="",
        # nbconvert warns about every figure without alt text; matplotlib output never has it.
        log=_QUIET_NBCONVERT_LOG,
    )
    if stakeholder:
        exporter.exclude_input = True
        exporter.exclude_input_prompt = True
        exporter.exclude_output_prompt = True
    return exporter


def render_notebook_html(
    nb: nbformat.NotebookNode,
    stakeholder: bool,
    title: str,
    run_dir: str | Path | None = None,
    summary_html: str | None = None,
) -> str:
    """Render one notebook to a self-contained, offline HTML page.

    Args:
        nb: the executed notebook (not modified).
        stakeholder: hide code, prompts and the parameter cells, and apply the stakeholder
            copy rules (``report_copy.stakeholder_outputs``); otherwise fold repeated C++
            log lines (``report_copy.quiet_full_copy``).
        title: the page title.
        run_dir: the run folder, so that the stakeholder copy shows paths relative to it.
        summary_html: a summary box shown above everything else (``summary_box.summary_box_html``).
    """
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    nb = copy.deepcopy(nb)
    nb.metadata["title"] = title
    if stakeholder:
        nb.cells = [c for c in nb.cells if not STAKEHOLDER_DROP_TAGS & set(c.get("metadata", {}).get("tags", []))]
        stakeholder_outputs(nb, run_dir)
    else:
        quiet_full_copy(nb)
    _without_widgets(nb)
    if summary_html:
        box = nbformat.v4.new_code_cell("# summary box (added by the report renderer)", metadata={"tags": ["summary"]})
        box.outputs = [nbformat.v4.new_output("display_data", data={"text/html": summary_html})]
        nb.cells.insert(0, box)
    # Progress bars write '\r'-separated updates; keep only the final state of each line.
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    page, _ = _exporter(stakeholder).from_notebook_node(nb, resources={"metadata": {"name": title}})
    return _finish_page(page, title)


def report_paths(notebook_name: str, reports_dir: str | Path) -> tuple[Path, Path]:
    """``(full, stakeholder)`` report paths of a notebook: ``<stem>.full.html`` and ``<stem>.html``."""
    stem = Path(notebook_name).stem
    return Path(reports_dir) / f"{stem}.full.html", Path(reports_dir) / f"{stem}.html"


def render_reports(executed_notebook_path: str | Path, reports_dir: str | Path) -> tuple[Path, Path]:
    """Write the full report and the code-hidden stakeholder report of an executed notebook.

    Works for partially executed (failed) notebooks too: the full report shows the
    traceback with its ANSI colours converted to HTML, the stakeholder report one
    sentence naming the error. Paths in the stakeholder report are shown relative to
    the run folder when the notebook lies in ``<run_dir>/notebooks/`` next to a
    ``run.json``; then both reports open with the run's summary box for this notebook (the data,
    its result and verdict in words, a link back to the index). Whatever still looks like machine output there
    (``report_copy.copy_problems``) is logged as a warning; the page is written anyway.

    Returns:
        ``(full_html_path, stakeholder_html_path)``.
    """
    executed = Path(executed_notebook_path)
    if not executed.is_file():
        raise FileNotFoundError(f"cannot render reports: executed notebook {executed} does not exist")
    nb = nbformat.read(executed, as_version=4)
    parent = executed.resolve().parent.parent  # <run>/notebooks/<notebook>: the run folder, when it is one
    run_dir = parent if (parent / "run.json").is_file() else None
    full_path, stakeholder_path = report_paths(executed.name, reports_dir)
    full_path.parent.mkdir(parents=True, exist_ok=True)
    title = stage_title(executed.stem)
    box = summary_box_html(run_dir, executed.stem) if run_dir is not None else None
    write_text_atomic(full_path, render_notebook_html(nb, False, f"{title} (with code)", summary_html=box))
    page = render_notebook_html(nb, True, title, run_dir=run_dir, summary_html=box)
    for problem in copy_problems(page):
        logging.getLogger(__name__).warning("stakeholder report %s: %s", stakeholder_path.name, problem)
    write_text_atomic(stakeholder_path, page)
    return full_path, stakeholder_path
