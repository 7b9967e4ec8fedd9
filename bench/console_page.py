#!/usr/bin/env python3
"""The console's first paint in headless Chromium (make bench-console).

    console_page.py --port P --operator-token T [--runs N]

Opens /console once (the sign-in page) to measure the page's own load (the
load event of its HTML, script and style, no cache) as the floor, then,
signed in, the time from navigation to the first frame drawn with the roads
and the drivers (console.js's firstPaintMs: GET /v1/map/roads fetched,
parsed and drawn, the socket open and its first console.update applied),
cache disabled, RUNS times. Prints name=value lines (medians)."""
import argparse
import asyncio
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "e2e"))
from cdp import Browser, Page  # noqa: E402


async def main(a):
    b = Browser().start()
    try:
        page = await Page.open(b)
        await page.send("Network.enable")
        await page.send("Network.setCacheDisabled", {"cacheDisabled": True})
        url = f"http://127.0.0.1:{a.port}/console"
        floor, paint, roads, sizes = [], [], [], []
        await page.navigate(url)  # the origin, for its sessionStorage
        for _ in range(a.runs):
            await page.eval("sessionStorage.clear(); true")
            await page.navigate(url)
            floor.append(await page.eval("performance.getEntriesByType('navigation')[0].loadEventEnd"))
        for _ in range(a.runs):
            await page.eval("sessionStorage.setItem('ridehail.console', %s); true" % json.dumps(
                json.dumps({"token": a.operator_token, "subject": "bench"})))
            await page.navigate(url)
            await page.until("window.ridehailConsole.firstPaintMs !== null && window.ridehailConsole.updates > 0",
                             timeout=60, what="the first paint")
            paint.append(await page.eval("window.ridehailConsole.firstPaintMs"))
            roads.append(await page.eval("window.ridehailConsole.roadsDrawnMs"))
            sizes.append(await page.eval(
                "performance.getEntriesByType('resource').filter(r => r.name.endsWith('/v1/map/roads'))"
                ".map(r => r.encodedBodySize)[0] || 0"))
        await page.close()
    finally:
        b.stop()
    print(f"console_page_load_ms={statistics.median(floor):.0f}")
    print(f"console_load_ms={statistics.median(paint):.0f}")
    print(f"console_load_runs={','.join('%.0f' % x for x in paint)}")
    print(f"console_roads_ms={statistics.median(roads):.0f}")
    print(f"console_roads_kb={statistics.median(sizes) / 1000:.0f}")
    print(f"console_load_vs_page_load={statistics.median(paint) / max(1, statistics.median(floor)):.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--operator-token", required=True)
    ap.add_argument("--runs", type=int, default=5)
    asyncio.run(main(ap.parse_args()))
