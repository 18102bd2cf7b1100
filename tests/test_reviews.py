"""The reviews file (issue 21, item 4): one verdict per line, written at once; the latest verdict of an alert wins;
a torn last line (a crash while writing) is ignored and reported, and the next verdict still reads."""

import json

import pytest

from nexara_lib.deploy.reviews import find_alerts, read_reviews, record_verdict


def alert(tmp_path, ident: str, alarm_t: float = 4.0) -> dict:
    folder = tmp_path / "detect" / "evidence" / ident
    folder.mkdir(parents=True)
    info = {"alert_id": ident, "camera": "lobby", "source": "lobby", "alarm_t": alarm_t, "wall_time": ""}
    (folder / "alert.json").write_text(json.dumps(info))
    return {**info, "folder": str(folder)}


def test_latest_verdict_wins_and_lines_point_at_the_evidence(tmp_path):
    first, second = alert(tmp_path, "a1"), alert(tmp_path, "a2", 9.0)
    path = tmp_path / "reviews.jsonl"
    record_verdict(path, first, "fight", reviewer="op1")
    record_verdict(path, second, "unsure")
    record_verdict(path, first, "not_fight", reviewer="op2")  # changed their mind
    reviews = read_reviews(path)
    assert reviews.lines == 3 and not reviews.torn and reviews.problems() == []
    assert reviews.verdict("a1") == "not_fight" and reviews.verdict("a2") == "unsure" and reviews.verdict("x") is None
    line = reviews.latest["a1"]
    assert line["evidence"] == "detect/evidence/a1" and line["camera"] == "lobby" and line["reviewer"] == "op2"
    assert [a["alert_id"] for a in find_alerts([tmp_path])] == ["a1", "a2"]
    with pytest.raises(ValueError, match="verdict 'maybe'"):
        record_verdict(path, first, "maybe")


def test_a_torn_last_line_is_ignored_and_the_next_verdict_reads(tmp_path):
    first, second = alert(tmp_path, "a1"), alert(tmp_path, "a2")
    path = tmp_path / "reviews.jsonl"
    record_verdict(path, first, "fight")
    with open(path, "ab") as handle:  # a crash in the middle of writing a line
        handle.write(b'{"alert": "a2", "verd')
    reviews = read_reviews(path)
    assert reviews.torn and reviews.verdict("a1") == "fight" and reviews.verdict("a2") is None
    assert "cut short" in reviews.problems()[0]
    record_verdict(path, second, "not_fight")
    reviews = read_reviews(path)
    assert reviews.verdict("a2") == "not_fight" and reviews.verdict("a1") == "fight"
    assert not reviews.torn and reviews.bad_lines == [2]  # the torn fragment stays a line of its own, ignored
    assert path.read_bytes().endswith(b"\n")
