"""Open a report in headless Chromium: console errors, what rendered, and a screenshot.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: commands on
fd 3, replies on fd 4, JSON messages ending in a NUL byte); no network port and no extra package.

    check = check_page("results/quick/index.html", screenshot="results/quick/screenshot.png")
    check.console_errors, check.tables, check.images, check.images_loaded
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xairepro.errors import UsageError
from xairepro.utils import atomic_write_bytes

__all__ = ["BrowserCheck", "find_chromium", "check_page", "CHROMIUM_FLAGS"]

#: Flags of every launch: headless, no sandbox (root in containers), nothing reaching the network.
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
)

_PAGE_PROBE = """JSON.stringify({
  title: document.title,
  tables: document.querySelectorAll('table').length,
  rows: document.querySelectorAll('table tbody tr').length,
  images: document.images.length,
  imagesLoaded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length,
  scripts: document.scripts.length,
  textLength: document.body ? document.body.innerText.length : 0,
  height: document.documentElement.scrollHeight
})"""


@dataclass
class BrowserCheck:
    """What Chromium saw: counts of rendered elements and every console/log error."""

    title: str = ""
    tables: int = 0
    rows: int = 0
    images: int = 0
    images_loaded: int = 0
    scripts: int = 0
    text_length: int = 0
    console_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None


def find_chromium() -> str:
    """Path of a Chromium binary (``XAIREPRO_CHROMIUM`` first); ``UsageError`` naming the fix if none."""
    env = os.environ.get("XAIREPRO_CHROMIUM")
    if env:
        if shutil.which(env):
            return shutil.which(env)  # type: ignore[return-value]
        raise UsageError(f"XAIREPRO_CHROMIUM={env!r} is not an executable")
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise UsageError("headless Chromium not found: install it (Debian: apt-get install -y chromium, "
                     "or `make browser`) or set XAIREPRO_CHROMIUM")


# Chromium reads DevTools commands on fd 3 and writes replies on fd 4.  A tiny Python trampoline moves
# the pipe ends there and execs the browser (no preexec_fn, which is unsafe in threaded processes; sh
# redirections only reach single-digit descriptors).
_TRAMPOLINE = (
    "import os, sys\n"
    "r, w = int(sys.argv[1]), int(sys.argv[2])\n"
    "a, b = os.dup(r), os.dup(w)\n"
    "os.dup2(a, 3); os.dup2(b, 4)\n"
    "os.set_inheritable(3, True); os.set_inheritable(4, True)\n"
    "[os.close(fd) for fd in {r, w, a, b} - {3, 4}]\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


class _Pipe:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, binary: str, user_dir: str, timeout: float) -> None:
        self.timeout = timeout
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", "--remote-debugging-pipe",
                "about:blank"]
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(to_chrome_r), str(from_chrome_w), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(to_chrome_r, from_chrome_w))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def _next(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._r], [], [], max(0.0, left))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method} failed: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + self.timeout
        while True:
            ev = self._next(deadline)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._next(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
    return out


def check_page(html: str | os.PathLike[str], *, screenshot: str | os.PathLike[str] | None = None,
               width: int = 1280, height: int = 900, timeout: float = 60.0) -> BrowserCheck:
    """Load ``html`` (a file) in headless Chromium; collect console errors; optionally save a screenshot.

    The screenshot (PNG) covers the whole page height, ``width`` pixels wide.
    """
    page = Path(html).resolve()
    if not page.is_file():
        raise UsageError(f"{str(page)!r} does not exist")
    binary = find_chromium()
    with tempfile.TemporaryDirectory(prefix="xairepro-chromium-") as user_dir:
        pipe = _Pipe(binary, user_dir, timeout)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
                pipe.call(domain, session=session)
            pipe.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
            pipe.call("Page.navigate", {"url": page.as_uri()}, session)
            pipe.wait_event("Page.loadEventFired")
            probe = json.loads(pipe.call("Runtime.evaluate", {"expression": _PAGE_PROBE, "returnByValue": True},
                                         session)["result"]["value"])
            check = BrowserCheck(title=probe["title"], tables=probe["tables"], rows=probe["rows"],
                                 images=probe["images"], images_loaded=probe["imagesLoaded"],
                                 scripts=probe["scripts"], text_length=probe["textLength"])
            if screenshot is not None:
                shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                 session)
                check.screenshot = atomic_write_bytes(screenshot, base64.b64decode(shot["data"]))
            pipe.drain(0.3)
            check.console_errors = _errors(pipe.events)
        finally:
            pipe.close()
    return check
