"""A minimal headless-Chromium driver for tests: the DevTools protocol over ``--remote-debugging-pipe``.

Why not ``--dump-dom --virtual-time-budget``: virtual time runs ahead while WebAssembly compiles and images
decode off the main thread, so the DOM was dumped half-way through a page's work (seen with onnxruntime-web
running ten inputs). Here the test waits in real time for the page to say it is done, with a deadline.

    with Browser("chromium", profile_dir) as browser:
        page = browser.open("http://127.0.0.1:8000/")
        browser.wait_for(page, "document.readyState === 'complete'")
        browser.evaluate(page, "document.title"); browser.screenshot(page, "shot.png")
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any


class BrowserError(RuntimeError):
    """Chromium died, answered with an error, or a page did not get ready in time."""


class Browser:
    """One headless Chromium process, driven through the DevTools pipe (fd 3 in, fd 4 out, NUL-framed
    JSON); one tab per `open`."""

    def __init__(self, executable: str, profile: Path, *, size: tuple[int, int] = (1200, 900)):
        self.size = size
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        command = [
            executable,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            "about:blank",
        ]

        def child_fds() -> None:
            # Chromium reads commands from fd 3 and writes answers to fd 4. Copies first, so that a pipe end
            # already numbered 3 or 4 is not overwritten before it is moved; pass_fds keeps 3 and 4 open.
            read, write = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=child_fds,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(BrowserError):
                self._send("Browser.close", timeout=5)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for fd in (self._to_chrome, self._from_chrome):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ------------------------------------------------------------------ protocol
    def _send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30
    ) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise BrowserError(f"{method}: {answer['error']}")
                    return answer.get("result", {})
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise BrowserError(f"{method}: no answer from Chromium within {timeout} s")
            ready, _, _ = select.select([self._from_chrome], [], [], 0.5)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise BrowserError("Chromium closed its DevTools pipe")
                self._buffer += chunk

    # ------------------------------------------------------------------ pages
    def open(self, url: str) -> str:
        """A new tab at `url`; returns its session id."""
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        width, height = self.size
        self._send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        self._send("Page.navigate", {"url": url}, session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self._send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 60) -> Any:
        """Poll `expression` until it is truthy (its value), or fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(session, expression)
            except BrowserError:
                value = None  # the page is still navigating
            if value:
                return value
            time.sleep(0.1)
        raise BrowserError(f"the page did not satisfy {expression!r} within {timeout} s")

    def screenshot(self, session: str, path: Path) -> Path:
        data = self._send("Page.captureScreenshot", {"format": "png"}, session)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)
