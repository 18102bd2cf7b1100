"""Notebook 09 glue: the alerts of this run folder that keep their evidence, operators' verdicts on them, and
what the run's index says about them.

Alerts come from the detections of the run folder (``nexara detect`` writes ``<run>/detect``, notebook 07
``artifacts/deploy/``) and from ``review_dirs``; verdicts go to ``<run>/reviews.jsonl`` one line at a time
(``deploy.reviews``). Headless (``nexara run``) the notebook only sums them up; in JupyterLab
``stages.review_widget`` shows each alert's clip and timeline with buttons and keys for the verdict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from IPython.display import Markdown
from matplotlib.figure import Figure

from nexara_lib.deploy.reviews import VERDICT_WORDS, Reviews, find_alerts, read_reviews, record_verdict
from nexara_lib.layout import RunLayout
from nexara_lib.stages.headline import record_headline, record_summary

SECTION = "09_alert_review"


def alert_folders(params: Mapping, layout: RunLayout) -> list[Path]:
    """Where this run's detections keep their evidence: ``<run>/detect*``, notebook 07's, and ``review_dirs``."""
    own = sorted(p for p in layout.run_dir.glob("detect*") if p.is_dir())
    return [*own, layout.deploy_dir, *(Path(p) for p in params.get("review_dirs") or [])]


def run_alerts(params: Mapping, layout: RunLayout) -> list[dict]:
    """Every alert of this run folder that has evidence (``alert.json`` + clip), oldest first."""
    return find_alerts(alert_folders(params, layout))


def save_verdict(layout: RunLayout, alert: Mapping, verdict: str, reviewer: str = "") -> dict:
    """Record one verdict ("fight", "not_fight", "unsure") on ``alert`` in the run's reviews file, at once."""
    return record_verdict(layout.reviews, alert, verdict, reviewer)


def review_counts(alerts: Sequence[Mapping], reviews: Reviews) -> Counter:
    """Alerts per verdict ("fight", "not_fight", "unsure") and "waiting" (no verdict yet)."""
    return Counter(reviews.verdict(a["alert_id"]) or "waiting" for a in alerts)


def _in_words(counts: Counter, total: int) -> str:
    done = total - counts["waiting"]
    parts = [f"{counts[v]} {VERDICT_WORDS[v]}" for v in VERDICT_WORDS if counts[v]]
    reviewed = f"{done} reviewed ({', '.join(parts)})" if done else "none reviewed yet"
    waiting = f"{counts['waiting']} await{'s' if counts['waiting'] == 1 else ''} review" if counts["waiting"] else ""
    return f"{total} alert{'s' if total != 1 else ''} with evidence: {reviewed}" + (f"; {waiting}" if waiting else "")


def review_overview(alerts: Sequence[Mapping], layout: RunLayout) -> Markdown:
    """The state of the review in a few plain sentences."""
    reviews = read_reviews(layout.reviews)
    counts = review_counts(alerts, reviews)
    if not alerts:
        text = (
            "No alert with evidence in this run folder yet. Alerts of `nexara detect --run` (and of notebook 07's "
            "test videos) keep a clip, a snapshot and their window scores; they appear here for review."
        )
    else:
        text = _in_words(counts, len(alerts)) + "."
        calibrated = sum(a.get("threshold_from") == "site" for a in alerts)
        text += (
            f" {calibrated} of them came from a camera with its own calibrated threshold."
            if calibrated
            else " None came from a calibrated camera (see `nexara calibrate`)."
        )
    problems = reviews.problems()
    if problems:
        text += " Note: " + "; ".join(problems) + "."
    return Markdown(text)


def alerts_table(alerts: Sequence[Mapping], layout: RunLayout) -> pd.DataFrame:
    """One row per alert: camera, when, peak score against its threshold, and its verdict so far."""
    reviews = read_reviews(layout.reviews)
    rows = [
        {
            "alert": i + 1,
            "camera": a.get("camera", a["source"]),
            "alarm at (s)": round(float(a["alarm_t"]), 1),
            "peak score": round(float(a["peak"]), 3),
            "threshold": (
                "n/a"
                if a.get("on_threshold") is None
                else f"{a['on_threshold']:.3f} ({'calibrated' if a.get('threshold_from') == 'site' else 'export'})"
            ),
            "verdict": VERDICT_WORDS.get(reviews.verdict(a["alert_id"]) or "", "awaits review"),
        }
        for i, a in enumerate(alerts)
    ]
    columns = ["alert", "camera", "alarm at (s)", "peak score", "threshold", "verdict"]
    return pd.DataFrame(rows, columns=columns).set_index("alert")


def alert_timeline(alert: Mapping) -> Figure:
    """The alert's window scores over its clip, its on-threshold, the confirming windows and the alarm."""
    fig = Figure(figsize=(7.5, 2.2), layout="constrained")
    ax = fig.subplots()
    windows = [w for w in alert.get("window_scores", []) if w.get("state") == "scored"]
    for w in windows:
        above = alert.get("on_threshold") is not None and w["score"] >= alert["on_threshold"]
        ax.plot([w["start_t"], w["end_t"]], [w["score"]] * 2, color="#c0392b" if above else "#1f5fa8", lw=2.2)
    if alert.get("on_threshold") is not None:
        ax.axhline(
            alert["on_threshold"], color="#c0392b", ls="--", lw=1, label=f"on-threshold {alert['on_threshold']:.2f}"
        )
    ax.axvspan(alert["start_t"], alert["alarm_t"], color="#f39c12", alpha=0.2, lw=0, label="confirming windows")
    ax.axvline(alert["alarm_t"], color="#f39c12", lw=1.5, label="alarm")
    ax.set_xlim(alert["clip_start_t"], max(alert["clip_end_t"], alert["alarm_t"]) + 1e-6)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("time in the recording (s)")
    ax.set_ylabel("score")
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    if not windows:
        ax.text(0.5, 0.5, "no window scores kept", ha="center", va="center", transform=ax.transAxes)
    return fig


def publish_review(alerts: Sequence[Mapping], layout: RunLayout) -> None:
    """The review's state in one sentence and a verdict, for the run's index page."""
    reviews = read_reviews(layout.reviews)
    counts = review_counts(alerts, reviews)
    record_headline(
        layout.run_dir,
        SECTION,
        {
            "alerts with evidence": {"value": len(alerts), "format": "number"},
            "alerts awaiting review": {"value": counts["waiting"], "format": "number"},
        },
    )
    if not alerts:
        result = "No alert with evidence to review in this run folder."
        verdict = "Nothing to review yet; every alert of the detector keeps a clip for review here."
    else:
        result = _in_words(counts, len(alerts)) + "."
        verdict = (
            f"{counts['waiting']} alert(s) wait for an operator; open notebook 09 in JupyterLab to review them."
            if counts["waiting"]
            else "Every alert is reviewed; nexara feedback turns the verdicts into training clips of their cameras."
        )
        if counts["not_fight"]:
            share = counts["not_fight"] / max(1, len(alerts) - counts["waiting"] - counts["unsure"])
            verdict += f" {share:.0%} of the decided alerts were false alarms."
    record_summary(layout.run_dir, SECTION, result, verdict)
