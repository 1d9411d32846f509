"""Headless Chromium driven over the DevTools protocol on a pipe (no WebSocket client
needed): open a page at a window width, ask the laid-out page questions, take a
full-page screenshot."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

#: Finds every pair of SVG text elements, in the same chart, whose boxes intersect by more
#: than half a pixel either way; and the page's scroll width.
OVERLAPS_JS = """
(() => {
  const hits = [];
  document.querySelectorAll('svg').forEach((svg, n) => {
    const boxes = [...svg.querySelectorAll('text')].map(t => [t.textContent, t.getBoundingClientRect()])
      .filter(([, r]) => r.width > 0 && r.height > 0);
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const [a, r] = boxes[i], [b, q] = boxes[j];
      const dx = Math.min(r.right, q.right) - Math.max(r.left, q.left);
      const dy = Math.min(r.bottom, q.bottom) - Math.max(r.top, q.top);
      if (dx > 0.5 && dy > 0.5) hits.push([svg.getAttribute('class') || 'svg ' + n, a, b]);
    }
  });
  return hits;
})()
"""


class Browser:
    """One headless Chromium, one tab; commands and answers on fds 3 and 4."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child: DevTools reads fd 3 and writes fd 4
            # Moved above 10 first, so that neither end can be overwritten by the other's dup2.
            high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--hide-scrollbars", "--mute-audio", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, close_fds=False, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next = 0
        self._events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)

    def close(self) -> None:
        """End the browser and every process it started."""
        with contextlib.suppress(OSError):
            os.close(self._to_child)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            os.close(self._from_child)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the protocol ---------------------------------------------------------------------------
    def _read(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)  # type: ignore[no-any-return]

    def call(self, method: str, *, session: bool = False, timeout: float = 60, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read(timeout)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})  # type: ignore[no-any-return]
            self._events.append(answer)

    def _wait_event(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for n, e in enumerate(self._events):
                if e.get("method") == method:
                    del self._events[: n + 1]
                    return
            self._events.append(self._read(max(0.1, deadline - time.monotonic())))

    # --- what the tests use -------------------------------------------------------------------------
    def open(self, url: str, width: int, height: int = 900) -> None:
        """Load ``url`` in a window ``width`` pixels wide and wait for it to load."""
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        self._events.clear()
        self.call("Page.navigate", session=True, url=url)
        self._wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (DevTools is not bound by the page's CSP)."""
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"in the page: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page, however long, as a PNG."""
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                         timeout=120)["data"]
        path.write_bytes(base64.b64decode(data))
        return path
