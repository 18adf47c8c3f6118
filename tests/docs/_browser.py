"""A minimal headless-Chromium driver over the DevTools protocol.

Chromium is started with `--remote-debugging-pipe`: it reads protocol
commands (JSON, each ended by a NUL byte) on file descriptor 3 and writes
replies and events on descriptor 4. No websocket, no extra package: the
standard library and Debian's `chromium` are enough.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-pipe",
)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One Chromium process and one page (tab) driven over the pipe."""

    def __init__(self, executable, timeout=60.0):
        self._timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="keras-attn-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def child_fds():
            # The protocol wants the pipe ends at descriptors 3 and 4.
            high_r = os.dup(to_browser_r)
            high_w = os.dup(from_browser_w)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self._process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,
            # Kept open in the child after `child_fds` has placed the pipes.
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._replies = {}
        self.events = []
        self._lock = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.send("Target.createTarget", url="about:blank")
        attached = self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.page(f"{domain}.enable")

    def _read(self):
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._lock:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._lock.notify_all()

    def send(self, method, session=None, **params):
        """Sends one command; returns its result or raises on an error."""
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
        message = {"id": message_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self._timeout
        with self._lock:
            while message_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply to {method}")
                self._lock.wait(left)
            reply = self._replies.pop(message_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def page(self, method, **params):
        """Sends a command to the page's session."""
        return self.send(method, session=self._session, **params)

    def wait_event(self, method, since, timeout=None):
        """Waits for event `method` at index `since` or later of `events`."""
        deadline = time.monotonic() + (timeout or self._timeout)
        with self._lock:
            while True:
                for event in self.events[since:]:
                    if event["method"] == method:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {method} event")
                self._lock.wait(left)

    def navigate(self, url):
        """Loads `url` and waits for its load event; returns the event index.

        Events recorded from that index on belong to this page.
        """
        since = len(self.events)
        self.page("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", since)
        return since

    def evaluate(self, expression):
        """The JSON value of a JavaScript expression (promises awaited)."""
        result = self.page(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, timeout=10.0, interval=0.1):
        """Polls a JavaScript expression until it is truthy; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(interval)

    def screenshot(self, path, max_height=6000):
        """Writes a PNG of the whole page (up to `max_height` pixels)."""
        metrics = self.page("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        clip = {
            "x": 0,
            "y": 0,
            "width": min(size["width"], 1280),
            "height": min(size["height"], max_height),
            "scale": 1,
        }
        data = self.page(
            "Page.captureScreenshot",
            format="png",
            clip=clip,
            captureBeyondViewport=True,
        )["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_browser)
        shutil.rmtree(self._profile, ignore_errors=True)
