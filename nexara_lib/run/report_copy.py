"""What the two HTML copies of an executed notebook show: the rules applied before nbconvert renders them.

The stakeholder copy (``<stem>.html``) is read by people who never read code, so
``stakeholder_outputs`` rewrites a deep copy of the notebook:

* stdout keeps each line's final state (carriage returns applied); a finished
  progress bar becomes its count ("probing clips: 320 of 320"), an unfinished
  one goes; logger lines, Python warnings and traceback blocks go; stderr goes;
* a progress-bar widget becomes its final count, or disappears if it never finished;
* an ``error`` output becomes one sentence naming the error (the full report has the traceback);
* text/plain-only results lose pandas' ``Name: ..., dtype: ...`` trailer;
* absolute paths become relative to the run folder or the repository, or keep
  only their last two components (URLs and data URIs are left alone).

``copy_problems`` reads a rendered stakeholder page and lists what still looks
like machine output. ``quiet_full_copy`` folds repeated TensorFlow/absl C++ log
lines of the full report (``<stem>.full.html``) into one line and a count.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat

import nexara_lib

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
REPO_ROOT = Path(nexara_lib.__file__).resolve().parents[1]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# tqdm: "{desc}: {pct}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate}]"; the desc is optional
_BAR = re.compile(
    r"^\s*(?P<label>.*?)\s*:?\s*(?P<pct>\d{1,3})%\|[^|\n]*\|"
    r"(?:\s*(?P<n>\d+(?:\.\d+)?[kMGTPE]?)/(?P<total>\d+(?:\.\d+)?[kMGTPE]?))?"
)
_LOGGER = re.compile(r"^(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]|[IWEF]\d{4} \d\d:\d\d:\d\d)")
_PY_WARNING = re.compile(r"^\S.*?\.py:\d+: (?:[A-Z]\w*)?Warning\b")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?::(?:\s.*)?)?$")
_CHAINED = re.compile(r"^(?:During handling of the above exception|The above exception was the direct cause)")
_RULE = re.compile(r"^-{20,}\s*$")
_PANDAS_TRAILER = re.compile(r"^(?:(?:Name|Length|Freq): .*, )?dtype: \S.*$|^Length: \d+$")
# A protected token (URL, data URI) is matched first and kept as it is; otherwise an absolute path.
_PATH_OR_KEEP = re.compile(
    r"(?P<keep>(?:\b[A-Za-z][\w+.-]*://|\bdata:)[^\s\"'<>]*)"
    r"|(?P<path>(?<![\w.:/~-])/(?:[\w.-]+/)+[\w.-]+)"
)

_PROBLEMS = (
    ("pandas dtype", re.compile(r"dtype:")),
    ("pandas name", re.compile(r"Name:")),
    ("traceback", re.compile(r"Traceback")),
    ("log warning", re.compile(r"WARNING")),
    ("progress bar", re.compile(r"\d+%\|")),
    ("absolute path", re.compile(r"(?<![\w.:/~-])/(?:[\w.-]+/)+[\w.-]+")),
    ("scientific notation", re.compile(r"\b\d+(?:\.\d+)?e[-+]?\d+\b", re.IGNORECASE)),
)

_CPP_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d(?:\.\d+)?\s+\d+\s+\S+:\d+\]\s*")
_CPP_LOG = re.compile(
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d|NodeDef mentions attribute|oneDNN custom operations"
    r"|All log messages before absl::InitializeLog"
)


# --- text helpers -------------------------------------------------------------


def _text(value) -> str:
    """Output text as one string (nbformat may keep it as a list of lines)."""
    return "".join(value) if isinstance(value, list) else str(value)


def _final_state(line: str) -> str:
    """What a terminal shows of a line written with carriage returns: its last non-empty part."""
    parts = [p for p in line.split("\r") if p]
    return parts[-1] if parts else ""


def _progress(line: str) -> tuple[bool, str] | None:
    """``None`` if ``line`` is no progress bar, else ``(finished, final text)``."""
    m = _BAR.search(line)
    if not m:
        return None
    label = m["label"].strip().rstrip(":").strip()
    if m["total"] is not None:
        finished = m["n"] == m["total"]
        text = f"{m['total']} of {m['total']}"
    else:
        finished = int(m["pct"]) >= 100
        text = "done"
    return finished, (f"{label}: {text}" if label else text)


def _clean_stdout(text: str) -> str:
    """Apply the stdout rules (see the module docstring) to a stream's text."""
    lines = [_final_state(line) for line in _ANSI.sub("", text).split("\n")]
    kept: list[str] = []
    skip_indented = in_traceback = False
    for line in lines:
        if in_traceback:
            if _EXCEPTION_LINE.match(line) and not _TRACEBACK.search(line):
                in_traceback = False  # the exception line closes the block; it goes too
            continue
        if skip_indented and line[:1].isspace() and line.strip():
            continue  # the source line Python prints under a warning
        skip_indented = False
        if _TRACEBACK.search(line):
            in_traceback = True
            if kept and _RULE.match(kept[-1]):
                kept.pop()
            continue
        if _CHAINED.match(line) or _LOGGER.match(line):
            continue
        if _PY_WARNING.match(line):
            skip_indented = True
            continue
        bar = _progress(line)
        if bar is not None:
            if bar[0]:
                kept.append(bar[1])
            continue
        kept.append(line)
    return "\n".join(kept)


def _path_roots(run_dir) -> list[tuple[str, str]]:
    """``(prefix, name shown for the folder itself)``, longest prefix first: the run folder, then the repository."""
    roots = []
    for folder in ([Path(run_dir)] if run_dir else []) + [REPO_ROOT]:
        for form in {str(folder), str(folder.resolve())}:
            roots.append((form.rstrip("/") or "/", folder.name or form))
    return sorted(set(roots), key=lambda r: -len(r[0]))


def _shorten_paths(text: str, roots: list[tuple[str, str]]) -> str:
    """Rewrite absolute paths in ``text``: relative to a root when under one, else the last two components."""

    def replace(m: re.Match) -> str:
        if m["keep"] is not None:
            return m["keep"]
        path = m["path"]
        for prefix, name in roots:
            if path == prefix:
                return name
            if path.startswith(prefix + "/"):
                return path[len(prefix) + 1 :]
        return "/".join(path.split("/")[-2:])

    return _PATH_OR_KEEP.sub(replace, text)


def shorten_paths(text: str, run_dir: str | Path | None = None) -> str:
    """``text`` with its absolute machine paths made relative to ``run_dir`` or the repository, or cut to their
    last two components (the rule of the stakeholder copy, for pages built outside a notebook: the index)."""
    return _shorten_paths(str(text), _path_roots(run_dir))


def _error_sentence(output) -> nbformat.NotebookNode:
    """One ``display_data`` saying which error stopped the step, with no traceback."""
    ename = _ANSI.sub("", str(output.get("ename") or "Error")).strip()
    evalue = _ANSI.sub("", str(output.get("evalue") or "")).strip().split("\n")[0].strip()
    if len(evalue) > 200:
        evalue = evalue[:197].rstrip() + "..."
    what = f"{ename}: {evalue}" if evalue else ename
    what = what.rstrip(".")
    sentence = f"This step stopped with an error: {html.escape(what)}. The report with code has the details."
    return nbformat.v4.new_output("display_data", data={"text/html": f"<p>{sentence}</p>", "text/plain": sentence})


# --- the stakeholder copy -----------------------------------------------------


def _merged_streams(outputs: list) -> list:
    """Consecutive stream outputs of the same name joined into one, so a bar split across writes stays one line."""
    merged: list = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (
            out.get("output_type") == "stream"
            and prev is not None
            and prev.get("output_type") == "stream"
            and prev.get("name") == out.get("name")
        ):
            prev["text"] = _text(prev["text"]) + _text(out["text"])
        else:
            merged.append(out)
    return merged


def _stakeholder_output(out, roots) -> object | None:
    """The stakeholder version of one output, or ``None`` to drop it."""
    kind = out.get("output_type")
    if kind == "stream":
        if out.get("name") != "stdout":
            return None
        text = _shorten_paths(_clean_stdout(_text(out.get("text", ""))), roots)
        if not text.strip():
            return None
        out["text"] = text if text.endswith("\n") else text + "\n"
        return out
    if kind == "error":
        out = _error_sentence(out)
    data = out.get("data")
    if not data:
        return out
    if WIDGET_VIEW in data:
        bar = _progress(_final_state(_ANSI.sub("", _text(data.get("text/plain", ""))).strip()))
        if bar is not None:
            if not bar[0]:
                return None
            data.pop(WIDGET_VIEW)
            data["text/plain"] = bar[1]
    plain_only = list(data) == ["text/plain"] and kind in ("execute_result", "display_data")
    if plain_only:
        lines = _text(data["text/plain"]).split("\n")
        data["text/plain"] = "\n".join(line for line in lines if not _PANDAS_TRAILER.match(line.strip()))
    for mime in ("text/plain", "text/html"):
        if mime in data:
            data[mime] = _shorten_paths(_text(data[mime]), roots)
    return out


def stakeholder_outputs(nb: nbformat.NotebookNode, run_dir: str | Path | None = None) -> None:
    """Apply the stakeholder copy rules to ``nb`` in place (pass a copy; see the module docstring).

    Args:
        nb: a copy of the executed notebook; its outputs and markdown cells are rewritten.
        run_dir: the run folder; paths under it are shown relative to it. Paths under
            the repository are shown relative to the repository, any other absolute
            path by its last two components.
    """
    roots = _path_roots(run_dir)
    for cell in nb.cells:
        if cell.get("cell_type") == "markdown":
            cell["source"] = _shorten_paths(_text(cell.get("source", "")), roots)
        if "outputs" not in cell:
            continue
        outputs = [o for o in cell["outputs"] if not (o.get("output_type") == "stream" and o.get("name") != "stdout")]
        cleaned = (_stakeholder_output(o, roots) for o in _merged_streams(outputs))
        cell["outputs"] = [o for o in cleaned if o is not None]


def copy_problems(page_html: str) -> list[str]:
    """What in a rendered stakeholder page's visible text still looks like machine output.

    Checks the text a reader sees (not ``<style>``/``<script>`` contents nor attribute
    values such as data URIs) for pandas trailers (``dtype:``, ``Name:``), ``Traceback``,
    ``WARNING``, progress bars, absolute paths and scientific notation.

    Returns:
        one short line per problem, ``"<kind>: <snippet>"``; a problem seen more
        than once ends with ``(N times)``. Empty when the page is clean.
    """
    from bs4 import BeautifulSoup  # an nbconvert dependency

    soup = BeautifulSoup(page_html, features="html.parser")
    for tag in soup(["style", "script", "template", "noscript"]):
        tag.decompose()
    counts: dict[str, int] = {}
    for line in soup.get_text("\n").split("\n"):
        for kind, pattern in _PROBLEMS:
            for m in pattern.finditer(line):
                snippet = line[max(0, m.start() - 30) : m.end() + 30].strip()
                key = f"{kind}: {snippet[:100]}"
                counts[key] = counts.get(key, 0) + 1
    return [key if n == 1 else f"{key} ({n} times)" for key, n in counts.items()]


# --- the full copy --------------------------------------------------------------


def _cpp_key(name: str, line: str) -> tuple[str, str] | None:
    """The identity of a TensorFlow/absl C++ log line (timestamp, thread and numbers aside), else ``None``."""
    if not _CPP_LOG.search(line):
        return None
    return name, re.sub(r"\d+", "#", _CPP_PREFIX.sub("", line.strip()))


def quiet_full_copy(nb: nbformat.NotebookNode) -> None:
    """Fold repeated TensorFlow/absl C++ log lines in each cell's stream outputs, in place.

    The first copy of such a line stays, followed by ``(the same message N more
    times)``; later copies go, and a stream left empty is dropped. Other lines are untouched.
    """
    for cell in nb.cells:
        outputs = cell.get("outputs")
        if not outputs:
            continue
        first: dict[tuple[str, str], tuple[int, int, str]] = {}  # key -> (output, line, its text)
        repeats: dict[tuple[str, str], int] = {}
        lines_of: dict[int, list[str | None]] = {}  # None: a repeat, dropped
        for i, out in enumerate(outputs):
            if out.get("output_type") != "stream":
                continue
            lines = _text(out.get("text", "")).splitlines(keepends=True)
            shown: list[str | None] = list(lines)
            for j, line in enumerate(lines):
                key = _cpp_key(out.get("name", ""), line)
                if key is None:
                    continue
                if key in first:
                    repeats[key] = repeats.get(key, 0) + 1
                    shown[j] = None
                else:
                    first[key] = (i, j, line)
            lines_of[i] = shown
        if not repeats:
            continue
        for key, n in repeats.items():
            i, j, line = first[key]
            end = "" if line.endswith("\n") else "\n"
            lines_of[i][j] = f"{line}{end}(the same message {n} more time{'s' if n > 1 else ''})\n"
        kept = []
        for i, out in enumerate(outputs):
            if i in lines_of:
                out["text"] = "".join(text for text in lines_of[i] if text is not None)
                if not out["text"]:
                    continue
            kept.append(out)
        cell["outputs"] = kept
