"""A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe`: headless Chromium, no new dependency.

Why a pipe and not a port: the browser then opens no TCP listener at all (nothing to race for, nothing another
process on the machine could talk to), and the protocol needs no websocket code — Chromium reads NUL-terminated
JSON commands on fd 3 and writes NUL-terminated JSON replies and events on fd 4.

    with Browser.launch(chromium_path, profile_dir) as browser:
        page = browser.new_page(1280, 900)
        page.navigate("file:///tmp/report.html")
        page.evaluate("document.title")
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any


class CdpError(RuntimeError):
    """The browser answered a command with an error, went away, or did not answer in time."""


def find_chromium() -> str | None:
    """The headless browser the HTML checks use (Debian package `chromium`)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-quic",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]
"""No background traffic: the browser only ever opens the file:// report it is given."""


class Browser:
    """One Chromium process driven over the DevTools pipe; commands are synchronous, events are queued."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int, timeout: float) -> None:
        self._proc = proc
        self._out = to_browser
        self._in = from_browser
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.timeout = timeout

    @classmethod
    def launch(cls, executable: str, profile: Path, *, timeout: float = 60) -> Browser:
        """Start Chromium with the pipe on fds 3 (commands in) and 4 (replies out) of the child."""
        cmd_read, cmd_write = os.pipe()
        reply_read, reply_write = os.pipe()
        # The child's ends, moved above 9 so that placing one on fd 3 cannot overwrite the other.
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (cmd_read, reply_write))
        for fd in (cmd_read, reply_write):
            os.close(fd)
        profile.mkdir(parents=True, exist_ok=True)
        # pass_fds keeps the two ends open across exec; bash (dash takes single-digit fds only) puts them
        # on 3 and 4 and execs the browser. No preexec_fn: it is unsafe when the test process has threads.
        wire = f'exec "$0" "$@" 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-'
        proc = subprocess.Popen(
            ["/bin/bash", "-c", wire, executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(child_in, child_out),
            env={**os.environ, "HOME": str(profile)},
        )
        cmd_read, reply_write = child_in, child_out
        os.close(cmd_read)
        os.close(reply_write)
        return cls(proc, cmd_write, reply_read, timeout)

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Ask the browser to quit, then make sure it did."""
        with suppress(CdpError, OSError):
            self.send("Browser.close")
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._out, self._in):
            with suppress(OSError):
                os.close(fd)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply; events that arrive meanwhile are kept for `wait_event`."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str, session: str | None = None) -> dict[str, Any]:
        """The first event named `method` (for `session`), waiting for it if it has not come yet."""
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method and (session is None or event.get("sessionId") == session):
                    del self._events[i]
                    return event
            message = self._read_message()
            if "method" in message:
                self._events.append(message)

    def _read_message(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise CdpError(f"no message from the browser within {self.timeout} s")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise CdpError(f"the browser closed the pipe (exit code {self._proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def new_page(self, width: int, height: int) -> Page:
        """A fresh tab with a fixed viewport, attached in flat mode (commands carry its sessionId)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, str(session))
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page


class Page:
    """One tab: navigate, evaluate JavaScript, click, screenshot."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def navigate(self, url: str) -> None:
        """Load `url` and wait for its load event (pytest-html renders its rows on DOMContentLoaded)."""
        reply = self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise CdpError(f"navigating to {url}: {reply['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page; a thrown exception is a CdpError."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise CdpError(f"{expression[:80]}…: {reply['exceptionDetails'].get('exception', reply)}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10) -> Any:
        """The first truthy value of `expression`, polled every 50 ms (for what the page renders after load)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def click(self, x: float, y: float) -> None:
        """A real mouse click at viewport coordinates, as a user's (the page's own listeners handle it)."""
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, path: Path) -> Path:
        """The viewport as PNG (what the user sees without scrolling)."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def page_of(executable: str, profile: Path, width: int, height: int) -> Iterator[Page]:
    """A page in a browser that is closed again when the block ends."""
    with Browser.launch(executable, profile) as browser:
        yield browser.new_page(width, height)
