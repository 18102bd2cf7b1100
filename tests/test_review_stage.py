"""Notebook 09's glue (issue 21, item 4): the alerts of a run folder, the review widget driven like an operator
(buttons and keys save verdicts at once), and the headless summary."""

import json

import pandas as pd
from field_utils import play, write_recording

from nexara_lib.deploy.evidence import EvidenceRecorder
from nexara_lib.deploy.reviews import read_reviews
from nexara_lib.layout import RunLayout
from nexara_lib.stages.review import alerts_table, publish_review, review_overview, run_alerts
from nexara_lib.stages.review_widget import alert_review


def run_with_alerts(tmp_path) -> RunLayout:
    layout = RunLayout(tmp_path / "run")
    rec = EvidenceRecorder(
        layout.run_dir / "detect",
        pre_s=2.0,
        post_s=1.0,
        max_mb=50.0,
        cell_px=480,
        max_fps=30.0,
        policy_for=lambda key: (0.42, 0.32, "site"),
    )
    play(rec, write_recording(tmp_path / "lobby.avi", 150), alarms=[4.0, 9.0, 13.0], camera="lobby")
    rec.close()
    return layout


def test_the_summary_counts_alerts_and_verdicts(tmp_path):
    layout = run_with_alerts(tmp_path)
    alerts = run_alerts({"review_dirs": []}, layout)
    assert [a["alarm_t"] for a in alerts] == [4.0, 9.0, 13.0] and {a["camera"] for a in alerts} == {"lobby"}
    assert review_overview(alerts, layout).data.startswith("3 alerts with evidence: none reviewed yet; 3 await review")
    table = alerts_table(alerts, layout)
    assert list(table["verdict"]) == ["awaits review"] * 3 and table["threshold"].iloc[0] == "0.420 (calibrated)"
    publish_review(alerts, layout)
    summary = json.loads(layout.summaries.read_text())["09_alert_review"]
    assert summary["result"] == "3 alerts with evidence: none reviewed yet; 3 await review."
    assert "open notebook 09 in JupyterLab" in summary["verdict"]
    headline = json.loads(layout.headline.read_text())["09_alert_review"]
    assert headline["alerts awaiting review"]["value"] == 3
    empty = RunLayout(tmp_path / "empty")
    assert review_overview([], empty).data.startswith("No alert with evidence")


def test_an_operator_reviews_with_buttons_and_keys(tmp_path):
    layout = run_with_alerts(tmp_path)
    alerts = run_alerts({"review_dirs": []}, layout)
    box = alert_review(alerts, layout, reviewer="op")
    (start,) = box.children
    assert start.description == "Start review (3 of 3 await review)"
    start.click()  # nothing was loaded before: a headless run stores no clip
    caption, video, timeline, buttons, moves, status = box.children
    assert len(video.value) > 0 and bytes(timeline.value).startswith(b"\x89PNG") and "Alert 1 of 3" in caption.value
    fight, not_fight, unsure = buttons.children
    fight.click()  # saved at once, then on to the next alert awaiting review
    assert read_reviews(layout.reviews).verdict(alerts[0]["alert_id"]) == "fight"
    assert "Alert 2 of 3" in caption.value and "saved: alert 1 is <b>fight</b>" in status.value
    keys = moves.children[2]
    keys.value = "n"  # the keyboard: n = not a fight
    assert read_reviews(layout.reviews).verdict(alerts[1]["alert_id"]) == "not_fight" and keys.value == ""
    keys.value = "k"  # back to alert 2, then change its verdict
    assert "Alert 2 of 3" in caption.value
    unsure.click()
    reviews = read_reviews(layout.reviews)
    assert reviews.verdict(alerts[1]["alert_id"]) == "unsure" and reviews.lines == 3
    assert reviews.latest[alerts[0]["alert_id"]]["reviewer"] == "op"
    table = alerts_table(alerts, layout)
    assert list(table["verdict"]) == ["fight", "unsure", "awaits review"]
    assert pd.Series(review_overview(alerts, layout).data).str.contains("2 reviewed").all()
