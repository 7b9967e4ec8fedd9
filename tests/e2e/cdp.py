"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol
with python3-websockets: start it, open a page, evaluate script in it, take
screenshots. Only the process group it started is ever stopped."""
import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import websockets


def chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, width=1280, height=800):
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="ridehail-chromium.")
        self.proc = None
        self.port = None

    def start(self, timeout=30):
        exe = chromium_path()
        assert exe, "chromium is not installed (scripts/deps.sh install)"
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--disable-extensions", "--disable-default-apps", "--hide-scrollbars",
               "--mute-audio", f"--window-size={self.width},{self.height}", "--force-device-scale-factor=1",
               "--user-data-dir=" + self.profile, "--remote-debugging-port=0", "about:blank"]
        self.log = open(os.path.join(self.profile, "chromium.log"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(port_file):
                lines = open(port_file).read().split("\n")
                if lines and lines[0].strip():
                    self.port = int(lines[0])
                    break
            assert self.proc.poll() is None, "chromium exited: " + self.chromium_log()
            time.sleep(0.05)
        assert self.port, "chromium never opened its DevTools port: " + self.chromium_log()
        return self

    def chromium_log(self):
        try:
            return open(os.path.join(self.profile, "chromium.log")).read()[-3000:]
        except OSError:
            return ""

    def page_ws_url(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get("type") == "page"]
        assert pages, targets
        return pages[0]["webSocketDebuggerUrl"]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # only the group started here
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One page's DevTools session."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.pending = {}
        self.events = []
        self.console = []  # the page's console messages and exceptions
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, browser):
        ws = await websockets.connect(browser.page_ws_url(), max_size=None, open_timeout=10)
        page = cls(ws)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        return page

    async def _read(self):
        async for text in self.ws:
            m = json.loads(text)
            if "id" in m:
                fut = self.pending.pop(m["id"], None)
                if fut and not fut.done():
                    fut.set_result(m)
            else:
                self.events.append(m)
                if m["method"] == "Runtime.consoleAPICalled":
                    self.console.append(" ".join(str(a.get("value", a.get("description", "")))
                                                 for a in m["params"]["args"]))
                elif m["method"] == "Runtime.exceptionThrown":
                    d = m["params"]["exceptionDetails"]
                    self.console.append("exception: " + d.get("exception", {}).get("description", d.get("text", "")))

    async def send(self, method, params=None, timeout=20):
        self.next_id += 1
        fut = asyncio.get_event_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        m = await asyncio.wait_for(fut, timeout)
        assert "error" not in m, f"{method}: {m['error']}"
        return m.get("result", {})

    async def navigate(self, url, timeout=20):
        self.events.clear()
        await self.send("Page.navigate", {"url": url})
        deadline = time.time() + timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            assert time.time() < deadline, f"{url} did not load"
            await asyncio.sleep(0.05)

    async def eval(self, expr, await_promise=False):
        r = await self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                                 "awaitPromise": await_promise})
        assert "exceptionDetails" not in r, f"{expr}: {r['exceptionDetails']}"
        return r["result"].get("value")

    async def until(self, expr, timeout=15, what=None):
        deadline = time.time() + timeout
        while True:
            v = await self.eval(expr)
            if v:
                return v
            assert time.time() < deadline, f"page: no {what or expr} within {timeout}s; console: {self.console[-10:]}"
            await asyncio.sleep(0.1)

    async def screenshot(self, path):
        r = await self.send("Page.captureScreenshot", {"format": "png"})
        data = base64.b64decode(r["data"])
        with open(path, "wb") as f:
            f.write(data)
        return data

    async def close(self):
        self.reader.cancel()
        await self.ws.close()
