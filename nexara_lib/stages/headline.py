"""Headline figures and summaries: each notebook publishes its few key numbers for the run's index page,
and its result in one sentence with a verdict in plain words for the summary boxes of the reports."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nexara_lib.io import read_json, write_json_atomic
from nexara_lib.layout import RunLayout


def record_headline(run_dir: str | Path, section: str, figures: Mapping[str, Any]) -> Path:
    """Publish headline figures of one notebook into ``run_dir/artifacts/headline.json``.

    Figures of the same section are merged (a later call overwrites a key it
    repeats), other sections are kept; the file is rewritten atomically.

    Args:
        run_dir: the run folder (the notebooks' ``run_dir`` parameter).
        section: the publishing notebook, e.g. ``"04_diagnostics"``.
        figures: name -> value: a number (fractions are shown as percentages),
            a string, or ``{"value": 0.93, "ci": [0.90, 0.96]}`` (optional
            ``"format"``: ``"percent"``, ``"delta"``, ``"number"`` or ``"text"``).

    Returns:
        The path of ``headline.json``.
    """
    if not isinstance(section, str) or not section.strip():
        raise ValueError(
            f"record_headline: section must be a non-empty string such as '04_diagnostics', got {section!r}"
        )
    if not isinstance(figures, Mapping):
        raise TypeError(
            f"record_headline({section!r}): figures must be a dict of name -> value, got {type(figures).__name__}"
        )
    for name, value in figures.items():
        if not isinstance(name, str):
            raise TypeError(f"record_headline({section!r}): figure names must be strings, got {name!r}")
        if isinstance(value, Mapping) and "value" not in value:
            raise ValueError(
                f"record_headline({section!r}): figure {name!r} is a dict without a 'value' key: {value!r}"
            )
    path = RunLayout(Path(run_dir)).headline
    headline = read_json(path, {})
    headline.setdefault(section, {}).update(figures)
    return write_json_atomic(path, headline)


def record_summary(run_dir: str | Path, section: str, result: str, verdict: str) -> Path:
    """Publish what one notebook found, for people who never read code (``artifacts/summaries.json``).

    Args:
        run_dir: the run folder.
        section: the publishing notebook, e.g. ``"04_per_class_diagnostics"``.
        result: the headline result in one sentence, with its 95% CI where there is one, e.g.
            "On 48 test clips the model labelled 93.8% correctly (95% CI 87.5% to 98.4%)."
        verdict: what it means, in plain words, e.g. "Reliable on this data: ...".

    Returns:
        The path of ``summaries.json`` (rewritten atomically; other sections are kept).
    """
    for name, text in (("section", section), ("result", result), ("verdict", verdict)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"record_summary: {name} must be a non-empty sentence, got {text!r}")
    path = RunLayout(Path(run_dir)).summaries
    summaries = read_json(path, {})
    summaries[section] = {"result": result.strip(), "verdict": verdict.strip()}
    return write_json_atomic(path, summaries)
