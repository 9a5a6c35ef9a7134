"""The web page in headless Chromium: load it, change fields, submit, check the change through the API."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from shared.events import MatchFound
from tests.browser import HEADLESS_FLAGS, require
from tests.integration.api.api_helpers import SPEC, LiveServer, fixture_papers, owner_token

pytestmark = pytest.mark.browser


async def _prepare(url: str, base: str, fixtures_dir) -> tuple[dict[str, str], str, str]:
    client = aioredis.Redis.from_url(url)
    try:
        alice = await owner_token(client, "alice")
    finally:
        await client.aclose()
    async with httpx.AsyncClient(base_url=base) as http:
        sid = (await http.post("/v1/subscriptions", json=SPEC, headers=alice)).json()["id"]
        page_url = (await http.get(f"/v1/subscriptions/{sid}/links", headers=alice)).json()["page_url"]
    async with RedisBroker(url) as broker:
        for paper in fixture_papers(fixtures_dir)[:3]:
            match = MatchFound(subscription_id=sid, owner="alice", paper=paper, score=0.61, reasons=["about helium"])
            await broker.publish(match, stream="matches")
    return alice, sid, base + "/web/" + page_url.rsplit("/web/", 1)[1]


def test_edit_subscription_in_headless_chromium(live_api: LiveServer, clean_redis: str, fixtures_dir, tmp_path):
    browser = require("chromium", "chromedriver", python_modules=("selenium",))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC  # noqa: N812
    from selenium.webdriver.support.ui import Select, WebDriverWait

    alice, sid, page = asyncio.run(_prepare(clean_redis, live_api.url, fixtures_dir))
    options = webdriver.ChromeOptions()
    options.binary_location = browser["chromium"]
    for flag in (*HEADLESS_FLAGS, "--window-size=1200,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(browser["chromedriver"]), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(page)
        assert "A Luttinger Liquid Core Inside Helium-4 Filled Nanopores" in driver.page_source
        interests = driver.find_element(By.ID, "interests")
        interests.clear()
        interests.send_keys("vortices in superfluid films\nquantum Monte Carlo")
        seeds = driver.find_element(By.ID, "seed_papers")
        seeds.clear()
        seeds.send_keys("1201.4869v1")
        Select(driver.find_element(By.ID, "schedule_mode")).select_by_value("weekly")
        driver.find_element(By.ID, "save").click()
        wait = WebDriverWait(driver, 15)
        assert wait.until(EC.presence_of_element_located((By.ID, "saved"))).text == "Saved."
        driver.find_element(By.CSS_SELECTOR, "#match-1201\\.4869 button[value=like]").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "match-1201.4869"), "liked"))
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()
    assert (tmp_path / "page.png").stat().st_size > 10_000

    stored = httpx.get(f"{live_api.url}/v1/subscriptions/{sid}", headers=alice).json()
    assert stored["spec"]["interests"] == ["vortices in superfluid films", "quantum Monte Carlo"]
    assert stored["spec"]["seed_papers"] == ["1201.4869"]
    assert stored["spec"]["schedule"]["mode"] == "weekly"
    assert stored["spec"]["schedule"]["timezone"] == "Europe/Berlin"  # untouched fields survive
    assert stored["active"] is True and stored["liked"] == ["1201.4869"]
