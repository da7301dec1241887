"""The workflow list's query box in a real browser: a query narrows the list, a bad one
says what is wrong on the page, and the detail page links its search attributes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.async_api import Page, expect

from sdk import Client

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.ui, pytest.mark.timeout(90)]


async def test_query_box_filters_and_explains_bad_queries(
    real_client: Client, ui_url: str, page: Page
) -> None:
    for i in range(4):
        await real_client.start_workflow(
            "Order", id=f"order-{i}", task_queue="nobody",
            search_attributes={"CustomerId": f"c-{i % 2}", "Amount": i * 10,
                               "Due": datetime(2025, 1, 1 + i, tzinfo=UTC)})
    await page.goto(f"{ui_url}/workflows")
    box = page.get_by_test_id("query")
    await box.fill("CustomerId = 'c-1' AND Amount > 10")
    await box.press("Enter")
    rows = page.locator("table.workflows tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("order-3")
    await expect(rows.first).to_contain_text("CustomerId='c-1'")
    await expect(box).to_have_value("CustomerId = 'c-1' AND Amount > 10")

    await box.fill("Amount BETWEEN 10 AND")
    await box.press("Enter")
    error = page.get_by_test_id("query-error")
    await expect(error).to_contain_text("invalid query at position 21: expected a value")
    await expect(page.locator("table.workflows tbody")).to_contain_text("No workflow matches")
    await expect(box).to_have_value("Amount BETWEEN 10 AND")

    await page.goto(f"{ui_url}/workflow?id=order-2")
    attributes = page.get_by_test_id("search-attributes")
    await expect(attributes).to_contain_text("Amount=20")
    await attributes.get_by_role("link", name="CustomerId='c-0'").click()
    await expect(page.locator("table.workflows tbody tr")).to_have_count(2)
    await expect(page.get_by_test_id("query")).to_have_value("CustomerId = 'c-0'")
