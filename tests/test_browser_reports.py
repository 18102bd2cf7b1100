"""The rendered reports as a person sees them: every page of a finished run opened in headless Chromium.

Per page (index, stakeholder reports, full reports): no console errors, no failed requests, no wider
than a 1,280 px viewport, every image loaded, every link resolves (offline: no external links). The
index and stakeholder reports must also show no raw Python output (``dtype:``, ``Name:``, tracebacks,
warnings, progress bars). Screenshots go to ``outputs/test-artifacts/browser/<run name>/<page>.png``.

A fast test plants each kind of problem in a tiny page and checks the checker finds it.
"""

import shutil
from pathlib import Path

import pytest
from browser import Browser, find_chromium

pytestmark = pytest.mark.browser

if find_chromium() is None:
    pytest.skip("Chromium is not installed (/usr/bin/chromium or chromium on PATH)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
VIEWPORT_WIDTH = 1280
# Raw Python output that must not reach a stakeholder: pandas Series footers, tracebacks, log lines, tqdm bars.
FORBIDDEN_TEXT = ("dtype:", "Name:", "Traceback", "WARNING", "0%|")


def _report_pages(reports: Path):
    """(page file, kind) for index.html, then each stakeholder report, then each full report."""
    index = reports / "index.html"
    full = sorted(reports.glob("*.full.html"))
    stakeholder = sorted(p for p in reports.glob("*.html") if p not in full and p != index)
    return [(index, "index")] + [(p, "stakeholder") for p in stakeholder] + [(p, "full") for p in full]


@pytest.mark.xdist_group("smoke_run")
@pytest.mark.e2e
def test_smoke_run_reports_in_browser(smoke_run):
    reports = smoke_run / "reports"
    pages = _report_pages(reports)
    assert pages[0][0].is_file(), f"no index.html in {reports}"
    stakeholder = [p for p, kind in pages if kind == "stakeholder"]
    assert stakeholder, f"no stakeholder reports in {reports}"
    missing_full = [p.name for p in stakeholder if not p.with_suffix(".full.html").is_file()]
    assert not missing_full, f"stakeholder reports without a full report: {missing_full}"

    shots = REPO / "outputs" / "test-artifacts" / "browser" / smoke_run.name
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    problems = []
    with Browser() as browser:
        for page, kind in pages:
            check = browser.open(page, width=VIEWPORT_WIDTH, screenshot_dir=shots)
            forbidden = FORBIDDEN_TEXT if kind in ("index", "stakeholder") else ()
            problems += [f"{page.name}: {p}" for p in check.problems(forbidden_text=forbidden)]
            print(f"{page.name} ({kind}): {check.images} images, {check.links} links, screenshot {check.screenshot}")
    print(f"screenshots: {shots}")
    assert not problems, (
        f"{len(problems)} problem(s) in {len(pages)} pages of {reports} "
        f"(screenshots in {shots}):\n  " + "\n  ".join(problems)
    )


BAD_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>bad</title></head>
<body>
<h1 id="top-heading">Bad page</h1>
<img alt="missing picture" src="no-such-picture.png">
<a href="no-such-report.html">a missing report</a>
<a href="#no-such-anchor">a missing section</a>
<a href="#top-heading">an existing section</a>
<a href="https://example.com/">the internet</a>
<div style="width: 2000px; height: 20px; background: #ccc">too wide</div>
<p>Name: backbone, dtype: object</p>
<script>console.error("planted console error");</script>
</body></html>
"""

ONE_PIXEL_PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)

CLEAN_PAGE = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>clean</title></head>
<body>
<h1 id="intro">Clean page</h1>
<img alt="one pixel" src="{ONE_PIXEL_PNG}">
<a href="#intro">back to the top</a>
<a href="other.html#part">the other page</a>
<div style="overflow-x: auto"><div style="width: 2000px">wide, but scrolls inside its box</div></div>
<script>console.log("just a log line");</script>
</body></html>
"""


def test_checker_finds_planted_problems(tmp_path):
    (tmp_path / "bad.html").write_text(BAD_PAGE)
    (tmp_path / "clean.html").write_text(CLEAN_PAGE)
    (tmp_path / "other.html").write_text("<!DOCTYPE html><html><body><p id='part'>other</p></body></html>")
    with Browser() as browser:
        bad = browser.open(tmp_path / "bad.html", screenshot_dir=tmp_path / "shots")
        clean = browser.open(tmp_path / "clean.html", screenshot_dir=tmp_path / "shots")

    assert any("planted console error" in e for e in bad.console_errors), bad.console_errors
    assert any("no-such-picture.png" in r for r in bad.failed_requests), bad.failed_requests
    assert [i for i in bad.broken_images if "missing picture" in i and "no-such-picture.png" in i], bad.broken_images
    assert any("no-such-report.html" in link and "does not exist" in link for link in bad.broken_links), (
        bad.broken_links
    )
    assert any("#no-such-anchor" in link for link in bad.broken_links), bad.broken_links
    assert not any("#top-heading" in link for link in bad.broken_links), bad.broken_links
    assert bad.external_links == ["'https://example.com/' ('the internet')"]
    assert bad.too_wide and bad.document_width >= 2000 and bad.viewport_width == VIEWPORT_WIDTH
    assert any("div" in e for e in bad.wide_elements), bad.wide_elements
    assert "Bad page" in bad.text

    problems = bad.problems(forbidden_text=FORBIDDEN_TEXT)
    for expected in (
        "console error",
        "failed request",
        "broken image",
        "broken link",
        "external link",
        "wider than the viewport",
        "'dtype:'",
        "'Name:'",
    ):
        assert any(expected in p for p in problems), (expected, problems)
    assert not any("external link" in p for p in bad.problems(allow_external=True))

    assert clean.problems(forbidden_text=FORBIDDEN_TEXT) == []
    assert clean.images == 1 and clean.links == 2 and "Clean page" in clean.text
    for check in (bad, clean):
        assert check.screenshot.is_file() and check.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
