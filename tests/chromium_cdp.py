"""A small client of headless Chromium (Debian's ``chromium`` package) over the DevTools protocol.

Used by the browser tests of ``hwloop view`` and by ``scripts/view_screenshots.py``: open a page, read
its visible text (through Bokeh's shadow roots), take a screenshot. Everything is bounded in time.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# Text of every node, descending into shadow roots (Bokeh 3 renders its widgets inside them).
TEXT_JS = """(() => {
  const walk = (n) => {
    let s = "";
    if (n.shadowRoot) s += walk(n.shadowRoot);
    for (const c of n.childNodes) s += c.nodeType === 3 ? c.textContent + " " : walk(c);
    return s;
  };
  return walk(document.body || document);
})()"""


def chromium_path() -> str | None:
    """The Chromium executable, or None where it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Chromium:
    """One headless Chromium with one page; use as a context manager (the browser is always ended)."""

    def __init__(self, width: int = 1100, height: int = 1300, timeout_s: float = 20.0) -> None:
        import websocket  # websocket-client

        exe = chromium_path()
        if exe is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.timeout_s = timeout_s
        self._profile = tempfile.mkdtemp(prefix="hwloop-chromium-")
        port = _free_port()
        self.proc = subprocess.Popen(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                f"--remote-debugging-port={port}",
                "--remote-allow-origins=*",
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        url = None
        while url is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                url = pages[0]["webSocketDebuggerUrl"] if pages else None
            except OSError:
                pass
            if url is None:
                time.sleep(0.2)
        self.ws = websocket.create_connection(url, timeout=timeout_s)
        self._id = 0
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events in between are skipped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
        raise TimeoutError(f"{method}: no answer within {self.timeout_s} s")

    def navigate(self, url: str) -> None:
        """Open ``url`` in the page."""
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        """The page's visible text, shadow roots included, whitespace collapsed."""
        result = self.call("Runtime.evaluate", expression=TEXT_JS, returnByValue=True)
        return " ".join(str(result.get("result", {}).get("value", "")).split())

    def wait_for(self, predicate: Any, timeout_s: float, every_s: float = 0.25) -> str:
        """Poll the text until ``predicate(text)`` holds; the text then (TimeoutError past timeout_s)."""
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if predicate(text):
                return text
            time.sleep(every_s)
        raise TimeoutError(f"page text never matched within {timeout_s} s; last text: {text[:500]!r}")

    def screenshot(self, path: Path) -> None:
        """A PNG of the page as shown."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """End the browser and remove its profile."""
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
