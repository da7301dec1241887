"""Fixtures of the browser tests: the UI server of the test's namespace, and a page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Page, expect

from sdk import Client
from tests.ui.browser import chromium
from tests.ui.harness import ui_server

# Assertions wait this long for the page to get there (Playwright's default is 5 s; the
# machine running CI may be busy).
expect.set_options(timeout=10_000)


@pytest.fixture
def ui_url(redis_url: str, real_client: Client) -> Iterator[str]:
    with ui_server(redis_url, real_client.keys.prefix) as url:
        yield url


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        # Bounded waits: a missing element fails the test in seconds, not at its timeout.
        page.set_default_timeout(10_000)
        yield page
        await context.close()
