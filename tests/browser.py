"""Headless Chromium for tests, driven through the Chrome DevTools Protocol (no selenium, no chromedriver).

``Browser`` starts one Chromium (fresh temporary profile, no background networking), and
``Browser.open(page)`` loads a page and returns a ``PageCheck`` with what a person would run into:

* console errors: ``console.error``/``console.assert`` calls, uncaught exceptions, ``Log`` entries at level error;
* failed requests: ``Network.loadingFailed`` and responses with HTTP status >= 400;
* the document width against the viewport (``scrollWidth`` of ``<html>`` and ``<body>`` vs ``innerWidth``),
  with the outermost elements that stick out past the right edge;
* broken images (not complete, or ``naturalWidth == 0``);
* links: ``#fragment`` must name an id/name on the page, relative file links must exist on disk,
  ``http(s):``/``mailto:`` links are listed apart (the reports must work offline);
* the visible text (``document.body.innerText``) and a full-page PNG screenshot.

``PageCheck.problems()`` turns all of that into readable one-line problems. Usage::

    with Browser() as browser:
        page = browser.open("reports/index.html", screenshot_dir="outputs/shots")
        assert not page.problems(forbidden_text=("Traceback",))

Chromium is always killed and its profile folder removed on exit, also on failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)
MAX_SCREENSHOT_HEIGHT = 20_000


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or stopped answering."""


def find_chromium() -> str | None:
    """The Chromium executable (``/usr/bin/chromium`` or ``chromium`` on PATH), or None."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageCheck:
    """What one page load showed. ``problems()`` summarises it."""

    url: str
    path: Path | None = None
    load_error: str | None = None
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    viewport_width: int = 0
    document_width: int = 0
    body_width: int = 0
    wide_elements: list[str] = field(default_factory=list)
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    links: int = 0
    broken_links: list[str] = field(default_factory=list)
    external_links: list[str] = field(default_factory=list)
    text: str = ""
    screenshot: Path | None = None

    @property
    def too_wide(self) -> bool:
        return max(self.document_width, self.body_width) > self.viewport_width

    def text_hits(self, needles) -> list[str]:
        """For each needle found in the visible text: how often, and the first place it stands."""
        hits = []
        for needle in needles:
            count = self.text.count(needle)
            if count:
                at = self.text.index(needle)
                snippet = " ".join(self.text[max(0, at - 40) : at + len(needle) + 40].split())
                hits.append(f"visible text has {needle!r} ({count}x), e.g. ...{snippet}...")
        return hits

    def problems(self, *, allow_external: bool = False, forbidden_text=()) -> list[str]:
        """Every problem as one line; empty when the page is clean."""
        out = []
        if self.load_error:
            out.append(f"load: {self.load_error}")
        out += [f"console error: {e}" for e in self.console_errors]
        out += [f"failed request: {r}" for r in self.failed_requests]
        if self.too_wide:
            where = f"; sticking out: {', '.join(self.wide_elements)}" if self.wide_elements else ""
            out.append(
                f"page is wider than the viewport: html {self.document_width}px, "
                f"body {self.body_width}px > {self.viewport_width}px{where}"
            )
        out += [f"broken image: {i}" for i in self.broken_images]
        out += [f"broken link: {link}" for link in self.broken_links]
        if not allow_external:
            out += [f"external link (reports must work offline): {link}" for link in self.external_links]
        out += self.text_hits(forbidden_text)
        return out


# Run in the page after load. Returns sizes, images, anchors and links in one go.
_COLLECT_JS = r"""
(() => {
  const de = document.documentElement, body = document.body;
  const vw = window.innerWidth;
  const wide = [];
  if (Math.max(de.scrollWidth, body ? body.scrollWidth : 0) > vw) {
    const clips = el => { const o = getComputedStyle(el).overflowX; return o !== 'visible'; };
    for (const el of document.querySelectorAll('body *')) {
      const r = el.getBoundingClientRect();
      if (r.right <= vw + 0.5 || r.width === 0) continue;
      const parent = el.parentElement;
      if (parent && parent !== body && parent.getBoundingClientRect().right > vw + 0.5) continue;
      let a = parent, clipped = false;
      while (a && a !== body && a !== de) { if (clips(a)) { clipped = true; break; } a = a.parentElement; }
      if (clipped) continue;
      let name = el.tagName.toLowerCase();
      if (el.id) name += '#' + el.id;
      if (typeof el.className === 'string' && el.className.trim())
        name += '.' + el.className.trim().split(/\s+/).slice(0, 3).join('.');
      wide.push(name + ' (' + Math.round(r.width) + 'px wide, right edge ' + Math.round(r.right) + 'px)');
      if (wide.length >= 5) break;
    }
  }
  return {
    viewport: vw,
    htmlWidth: de.scrollWidth,
    bodyWidth: body ? body.scrollWidth : 0,
    scrollHeight: Math.max(de.scrollHeight, body ? body.scrollHeight : 0),
    wide: wide,
    ids: Array.from(document.querySelectorAll('[id]'), e => e.id),
    names: Array.from(document.querySelectorAll('a[name]'), e => e.getAttribute('name')),
    links: Array.from(document.querySelectorAll('a[href]'),
                      a => ({raw: a.getAttribute('href'), abs: a.href, text: (a.innerText || '').trim().slice(0, 40)})),
  };
})()
"""

# Waits (up to the given ms) for images still loading, then reports each one.
_IMAGES_JS = r"""
(async (ms) => {
  const imgs = Array.from(document.images);
  const pending = imgs.filter(i => !i.complete).map(i => new Promise(res => {
    i.addEventListener('load', res, {once: true}); i.addEventListener('error', res, {once: true});
  }));
  await Promise.race([Promise.all(pending), new Promise(res => setTimeout(res, ms))]);
  return imgs.map(i => ({src: i.getAttribute('src') || i.currentSrc || '', alt: i.alt || '',
                         complete: i.complete, width: i.naturalWidth}));
})(%d)
"""


class Browser:
    """One headless Chromium for many pages. Use as a context manager; ``close()`` always cleans up."""

    def __init__(self, executable: str | None = None, timeout: float = 30.0):
        self.executable = executable or find_chromium()
        if not self.executable or not Path(self.executable).exists() and not shutil.which(self.executable):
            looked = executable or "/usr/bin/chromium and chromium on PATH"
            raise BrowserError(f"Chromium not found (looked for {looked}): install the Debian package `chromium`")
        self.timeout = timeout
        self._proc: subprocess.Popen | None = None
        self._profile: str | None = None
        self._ws = None
        self._next_id = 0
        self._events: list[dict] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> Browser:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        import websocket

        self._profile = tempfile.mkdtemp(prefix="nexara-chromium-")
        log = open(os.path.join(self._profile, "chromium.log"), "wb")
        try:
            self._proc = subprocess.Popen(
                [
                    self.executable,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={self._profile}",
                    "--remote-debugging-port=0",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        port = self._wait_for_port()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as resp:
                    targets = json.load(resp)
                pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrowserError(f"Chromium lists no page target on port {port}")
            time.sleep(0.1)
        self._ws = websocket.create_connection(
            pages[0]["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True
        )
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def _wait_for_port(self) -> int:
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrowserError(
                    f"Chromium exited with {self._proc.returncode} before it listened:\n" + self._log_tail()
                )
            try:
                first = marker.read_text().splitlines()[0].strip()
                if first.isdigit():
                    return int(first)
            except (OSError, IndexError):
                pass
            time.sleep(0.05)
        raise BrowserError(f"Chromium wrote no {marker.name} within {self.timeout:.0f} s:\n" + self._log_tail())

    def _log_tail(self) -> str:
        try:
            return (Path(self._profile) / "chromium.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass
            self._ws = None
        if self._proc is not None:
            if self._proc.poll() is None:
                for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                    try:
                        os.killpg(self._proc.pid, sig)  # the process group this Popen started
                    except ProcessLookupError:
                        break
                    try:
                        self._proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            self._proc = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    # -- protocol --------------------------------------------------------------------------------
    def _receive(self, deadline: float) -> dict | None:
        """Next message, or None when the deadline passes first. Events are kept in ``_events``."""
        import websocket

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self._ws.settimeout(remaining)
        try:
            raw = self._ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketException, OSError) as exc:
            raise BrowserError(f"lost the connection to Chromium: {exc}") from exc
        message = json.loads(raw)
        if "method" in message:
            self._events.append(message)
        return message

    def send(self, method: str, params: dict | None = None, timeout: float | None = None) -> dict:
        """Call a DevTools method and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline)
            if message is None:
                raise BrowserError(f"{method}: no answer within {timeout or self.timeout:.0f} s")
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str, timeout: float | None = None):
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, timeout=timeout
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluate failed: {_exception_text(result['exceptionDetails'])}")
        return result["result"].get("value")

    def _wait_for_event(self, method: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        seen = len(self._events)
        while True:
            for event in self._events[seen:]:
                if event["method"] == method:
                    return True
            seen = len(self._events)
            if self._receive(deadline) is None and time.monotonic() >= deadline:
                return False

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._receive(deadline) is not None:
            pass

    # -- pages -----------------------------------------------------------------------------------
    def open(
        self, path_or_url, width: int = 1280, height: int = 900, screenshot_dir: str | Path | None = None
    ) -> PageCheck:
        """Load a page (a file path or URL), check it, and screenshot it into ``screenshot_dir``."""
        text = str(path_or_url)
        if "://" in text or text.startswith(("about:", "data:")):
            url, path = text, None
            if text.startswith("file://"):
                path = Path(url2pathname(unquote(urlsplit(text).path)))
        else:
            path = Path(text).resolve()
            url = path.as_uri()
        check = PageCheck(url=url, path=path)

        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.send("Emulation.setDeviceMetricsOverride", metrics)
        self._drain(0.05)
        self._events.clear()
        nav = self.send("Page.navigate", {"url": url})
        if nav.get("errorText"):
            check.load_error = f"navigation failed: {nav['errorText']}"
        elif not self._wait_for_event("Page.loadEventFired", self.timeout):
            check.load_error = f"no load event within {self.timeout:.0f} s"
        self._drain(0.3)  # late console messages and requests

        info = self.evaluate(_COLLECT_JS)
        check.viewport_width, check.document_width = info["viewport"], info["htmlWidth"]
        check.body_width, check.wide_elements = info["bodyWidth"], info["wide"]
        _check_links(check, info)

        # Full height: every image (lazy ones too) is in view, and the screenshot shows the whole page.
        full = min(max(int(info["scrollHeight"]), height), MAX_SCREENSHOT_HEIGHT)
        self.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": full})
        images = self.evaluate(_IMAGES_JS % 10_000, timeout=self.timeout)
        check.images = len(images)
        for img in images:
            if not img["complete"] or not img["width"]:
                src = img["src"]
                src = src if len(src) <= 80 else src[:80] + "..."
                check.broken_images.append(f"alt={img['alt']!r} src={src}")
        check.text = self.evaluate("document.body ? document.body.innerText : ''") or ""
        if screenshot_dir is not None:
            shot = self.send(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True},
                timeout=max(self.timeout, 60),
            )
            folder = Path(screenshot_dir)
            folder.mkdir(parents=True, exist_ok=True)
            name = (path.name if path else urlsplit(url).path.rsplit("/", 1)[-1]) or "page"
            name = name[:-5] if name.endswith(".html") else name
            check.screenshot = folder / f"{name}.png"
            check.screenshot.write_bytes(base64.b64decode(shot["data"]))
        self.send("Emulation.setDeviceMetricsOverride", metrics)

        self._drain(0.05)
        _collect_events(check, self._events)
        self._events.clear()
        return check


def _exception_text(details: dict) -> str:
    exc = details.get("exception") or {}
    text = exc.get("description") or details.get("text") or "exception"
    where = details.get("url")
    if where:
        text += f" ({_short(where)}:{details.get('lineNumber', 0) + 1})"
    return text.splitlines()[0] if text else text


def _short(url: str, limit: int = 100) -> str:
    return url if len(url) <= limit else url[:limit] + "..."


def _collect_events(check: PageCheck, events: list[dict]) -> None:
    urls = {}
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived":
            response = params["response"]
            if response.get("status", 0) >= 400:
                check.failed_requests.append(f"HTTP {response['status']} {_short(response['url'])}")
        elif method == "Network.loadingFailed":
            if params["requestId"] in urls:  # requests of an earlier page are not this page's
                check.failed_requests.append(f"{params.get('errorText', 'failed')} {_short(urls[params['requestId']])}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            parts = [a.get("value", a.get("description", a.get("type"))) for a in params.get("args", [])]
            check.console_errors.append(f"console.{params['type']}: " + " ".join(map(str, parts)))
        elif method == "Runtime.exceptionThrown":
            check.console_errors.append("uncaught " + _exception_text(params["exceptionDetails"]))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            where = f" ({_short(entry['url'])})" if entry.get("url") else ""
            check.console_errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')}{where}")


def _check_links(check: PageCheck, info: dict) -> None:
    anchors = set(info["ids"]) | set(info["names"])
    page = urlsplit(check.url)
    check.links = len(info["links"])
    for link in info["links"]:
        raw, absolute = link["raw"].strip(), link["abs"]
        label = f"{raw!r}" + (f" ({link['text']!r})" if link["text"] else "")
        if raw.startswith("#"):
            fragment = raw[1:]
            if fragment and fragment != "top" and fragment not in anchors and unquote(fragment) not in anchors:
                check.broken_links.append(f"{label}: no element with this id/name on the page")
            continue
        target = urlsplit(absolute)
        scheme = target.scheme.lower()
        if scheme in ("http", "https") and (target.scheme, target.netloc) == (page.scheme, page.netloc):
            continue  # same site as an http page: nothing on disk to check
        if scheme in ("http", "https", "mailto"):
            check.external_links.append(label)
        elif scheme == "file":
            local = Path(url2pathname(unquote(target.path)))
            if not local.exists():
                check.broken_links.append(f"{label}: {local} does not exist")
        elif scheme == "data":
            continue
        else:
            check.broken_links.append(f"{label}: unsupported link scheme {scheme or '(none)'!r}")
