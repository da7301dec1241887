"""The browser the UI tests and scripts/ui_screenshots.py drive: Debian's chromium
through Playwright (`playwright install` cannot download its own browser here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> str:
    """The chromium binary, installed from Debian's packages when it is missing."""
    if not os.path.exists(CHROMIUM):
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise RuntimeError(f"{CHROMIUM} is missing: install it with apt-get install chromium")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    return CHROMIUM


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=ensure_chromium(), args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            await browser.close()
