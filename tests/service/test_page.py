"""The web page driven in real headless Chromium against a real gateway on a loopback port.

Needs a Chromium (Debian's ``chromium`` package; ``VINR_CHROMIUM`` names another) and Python
``playwright`` (part of ``vinr[dev]``; only its driver is used, never its downloaded browsers). Without
them these tests are skipped, unless ``VINR_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing
Chromium), which makes a missing browser a failure. ``VINR_SCREENSHOTS=DIR`` saves the screenshots that
docs/ and the README show.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import av
import pytest

from tests.service.conftest import post_video, wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "bikes.mp4"
SCREENSHOTS = os.environ.get("VINR_SCREENSHOTS")


def chromium() -> str | None:
    return os.environ.get("VINR_CHROMIUM") or next(
        (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
    )


@pytest.fixture
def browser_page():
    """A Chromium page (desktop size); skipped (or, with VINR_REQUIRE_BROWSER=1, failed) without a browser."""
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("VINR_REQUIRE_BROWSER") == "1":
            pytest.fail("VINR_REQUIRE_BROWSER=1 but no Chromium or no playwright (apt-get install chromium)")
        pytest.skip("no Chromium or no playwright: apt-get install chromium; pip install 'vinr[dev]'")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1100, "height": 900}, accept_downloads=True)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        browser.close()
    assert not errors, f"the page threw: {errors}"


def shoot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def value(page, selector: str, expression: str = "e => e.value"):
    return page.eval_on_selector(selector, expression)


def test_upload_preview_run_download(serve, browser_page, tmp_path):
    client = serve()
    page = browser_page
    page.goto(str(client.base_url))
    page.wait_for_selector("#model option[value=tiny]", state="attached")
    shoot(page, "page-idle")

    page.get_by_label("Choose a video, or drop one here").set_input_files(str(SAMPLE))
    page.wait_for_selector("#info:not([hidden])")
    info = page.inner_text("#info")
    assert "200 × 84" in info and "25 fps" in info and "2.0 s" in info and "aac" in info, info

    page.get_by_label("Scale", exact=True).fill("3.5")  # the preview: the served model
    page.get_by_label("At second").fill("1.1")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector("#compare:not([hidden])")
    assert value(page, "#after", "e => [e.naturalWidth, e.naturalHeight]") == [700, 294]
    assert "Output frame 56 of 100" in page.inner_text("#preview-caption")
    page.locator("#split").fill("30")  # the before/after slider (a range input: keyboard and touch work)
    assert "inset(0px 70% 0px 0px)" in value(page, "#before", "e => e.style.clipPath")
    shoot(page, "page-preview")

    page.select_option("#model", "tiny")  # the job: the small test model, for speed
    page.get_by_label("Scale", exact=True).fill("2")
    page.get_by_role("button", name="Start").click()
    seen, deadline = set(), time.monotonic() + 180
    while time.monotonic() < deadline and (progress := value(page, "#progress")) < 100:
        seen.add(round(progress))
        if 0 < progress < 100 and "page-running" not in seen:
            seen.add("page-running")
            shoot(page, "page-running")
        time.sleep(0.1)
    assert value(page, "#progress") == 100, page.inner_text("#job-status")
    assert any(isinstance(p, int) and 0 < p < 100 for p in seen), f"no progress shown while running: {seen}"
    page.wait_for_selector("#download:not([hidden])")  # offered once the job's `end` event came
    assert "finished" in page.inner_text("#job-status") and "100 of 100 frames" in page.inner_text("#job-status")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download").click()
    assert download.value.suggested_filename == "bikes_vinr_400x168_50fps.mp4"  # the upload's name, what was made
    saved = tmp_path / "download.mp4"
    download.value.save_as(saved)
    with av.open(str(saved)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (400, 168)
        assert sum(1 for _ in container.decode(stream)) == 100
        assert container.streams.audio, "the sample's audio was dropped"
    assert "finished" in page.inner_text("#jobs tbody")

    page.get_by_label("Scale", exact=True).fill("9")  # above the limit: the API's own message is shown
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector("#message:not([hidden])")
    assert "query parameter 'scale': Input should be less than or equal to 8" in page.inner_text("#message")


def test_api_key_entry_and_job_list(serve, browser_page, clip_with_audio):
    client = serve(api_keys=["key-one", "key-two"])
    mine = post_video(client, clip_with_audio, {"scale": 1.5, "model": "tiny"}, headers={"X-API-Key": "key-one"})
    post_video(client, clip_with_audio, {"scale": 1.5, "model": "tiny"}, headers={"X-API-Key": "key-two"})
    wait_for(
        lambda: client.get(mine.headers["location"], headers={"X-API-Key": "key-one"}).json()["state"] == "finished"
    )
    page = browser_page
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(str(client.base_url))
    page.wait_for_selector("#key-section:not([hidden])")
    page.get_by_label("Key", exact=True).fill("wrong")
    page.get_by_label("Key", exact=True).press("Enter")  # the keyboard is enough
    page.wait_for_selector("#message:not([hidden])")
    assert "a valid API key is required" in page.inner_text("#message")
    page.get_by_label("Key", exact=True).fill("key-one")
    page.get_by_role("button", name="Use key").click()
    page.wait_for_selector("#jobs tbody tr")
    rows = page.locator("#jobs tbody tr")
    assert rows.count() == 1 and "finished" in rows.first.inner_text()  # key-two's job is not listed
    assert value(page, "html", "e => e.scrollWidth") <= 390, "the page scrolls sideways on a phone"
    shoot(page, "page-phone")
