"""The web page driven in real headless Chromium against a real gateway on a loopback port.

Needs a Chromium (Debian's ``chromium`` package; ``VINR_CHROMIUM`` names another) and Python
``playwright`` (part of ``vinr[dev]``; only its driver is used, never its downloaded browsers). Without
them these tests are skipped, unless ``VINR_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after installing
Chromium), which makes a missing browser a failure. ``VINR_SCREENSHOTS=DIR`` saves the screenshots that
docs/ and the README show.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import av
import pytest

from tests.media import audio_span
from tests.service.conftest import post_video, wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "bikes.mp4"
SCREENSHOTS = os.environ.get("VINR_SCREENSHOTS")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 1000}

BROKEN_WORDS = """root => {
  // words of visible text laid out over more than one line (a word broken inside, e.g. "Progres/s")
  const broken = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement.offsetParent) continue;
    const text = node.textContent;
    for (const match of text.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
      if (lines.size > 1) broken.push(match[0]);
    }
  }
  return broken;
}"""

SMALL_TARGETS = """() => {
  // visible controls smaller than 44 px in height (touch targets)
  const small = [];
  const controls = "button, select, input:not([type=radio]):not([type=file]), .segmented label";
  for (const e of document.querySelectorAll(controls)) {
    const box = e.getBoundingClientRect();
    const name = e.id || e.textContent.trim();
    if (e.offsetParent && box.width > 2 && box.height < 44) small.push(`${name}: ${box.height}`);
  }
  return small;
}"""


def chromium() -> str | None:
    return os.environ.get("VINR_CHROMIUM") or next(
        (path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None
    )


@pytest.fixture
def browser():
    """A function opening Chromium pages (a viewport, a colour scheme); skipped (or, with
    VINR_REQUIRE_BROWSER=1, failed) without a browser. No page may throw."""
    executable = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("VINR_REQUIRE_BROWSER") == "1":
            pytest.fail("VINR_REQUIRE_BROWSER=1 but no Chromium or no playwright (apt-get install chromium)")
        pytest.skip("no Chromium or no playwright: apt-get install chromium; pip install 'vinr[dev]'")
    errors: list[str] = []
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, args=["--no-sandbox"])

        def open_page(viewport=DESKTOP, scheme="light"):
            context = launched.new_context(viewport=viewport, color_scheme=scheme, accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.on("pageerror", lambda error: errors.append(str(error)))
            return page

        yield open_page
        launched.close()
    assert not errors, f"the page threw: {errors}"


def shoot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def value(page, selector: str, expression: str = "e => e.value"):
    return page.eval_on_selector(selector, expression)


def box(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


def open_app(page, client) -> None:
    page.goto(str(client.base_url))
    page.wait_for_selector("#model option[value=tiny]", state="attached")


def drop(page, paths: list[Path]) -> None:
    """Drop files on the drop zone, as a person dragging them from a file manager does."""
    files = [{"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    transfer = page.evaluate_handle(
        """files => {
          const transfer = new DataTransfer();
          for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, { type: "video/mp4" }));
          }
          return transfer;
        }""",
        files,
    )
    page.dispatch_event("#drop", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def files_read(page, count: int) -> None:
    page.wait_for_function(
        f"""() => {{
          const items = [...document.querySelectorAll('#files li .meta')];
          return items.length === {count} && items.every((e) => e.textContent !== 'Reading…');
        }}"""
    )


def job_item(page, name: str):
    return page.locator("#jobs li.job", has=page.locator(".job-name", has_text=name))


def in_view(page, selector: str) -> bool:
    return page.eval_on_selector(
        selector, "e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }"
    )


def split_matches(page, wipe: str, percent: float) -> None:
    """The divider (and its handle) sits at ``percent`` of the picture, the before layer clipped there."""
    picture, divider = box(page, wipe), box(page, f"{wipe} .divider")
    centre = divider["x"] + divider["width"] / 2
    assert abs(centre - (picture["x"] + picture["width"] * percent / 100)) <= 1.5, (centre, picture, percent)
    handle = box(page, f"{wipe} .handle")
    assert abs(handle["x"] + handle["width"] / 2 - centre) <= 1


def test_several_files_a_preset_slow_motion_and_the_video_wipe(serve, browser, tmp_path):
    """Three files dropped at once (one not a video): two jobs; the slow motion preset; the result and
    the input play under a wipe that follows the pointer; the download is named and made as asked."""
    client = serve()
    first, second, junk = tmp_path / "first.mp4", tmp_path / "second.mp4", tmp_path / "notes.mp4"
    shutil.copy(SAMPLE, first)
    shutil.copy(SAMPLE, second)
    junk.write_bytes(b"these are not video frames\n" * 200)
    page = browser()
    open_app(page, client)
    drop(page, [first, second, junk])
    files_read(page, 3)
    message = page.inner_text("#file-error")
    assert (
        "notes.mp4: cannot read the upload: it is not a video FFmpeg can open" in message and "such as MP4" in message
    ), message
    assert "Errno" not in message and "VideoReader" not in message
    assert page.get_by_role("button", name="Start 2 jobs").is_visible()

    page.get_by_role("button", name="Slow motion 4×").click()
    assert value(page, "[data-preset=slow4]", "e => e.getAttribute('aria-pressed')") == "true"
    assert value(page, "#slowmo") == "4"
    page.get_by_text("Sound, slowed").click()
    plan = page.inner_text("#plan")
    assert "400 × 168 at 25 fps, 8.0 s, 200 frames · slow motion 4×, sound slowed" in plan, plan
    page.select_option("#model", "tiny")
    page.get_by_role("button", name="Start 2 jobs").click()
    for name in ("first.mp4", "second.mp4"):
        expect_state(job_item(page, name), "done", timeout=240)
    assert "400 × 168 · 25 fps · slow motion 4× · tiny" in job_item(page, "first.mp4").inner_text()

    page.wait_for_selector("#player:not([hidden])")  # the first job, input beside result
    page.wait_for_function("() => document.getElementById('result').readyState >= 2")
    page.get_by_role("button", name="Play").click()
    page.wait_for_function(  # the input drawn at the output's size under the wipe
        """() => {
          const c = document.getElementById('source-canvas');
          if (c.width !== 400 || c.height !== 168) return false;
          const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          return pixels.some((v, i) => i % 4 !== 3 && v > 16);
        }"""
    )
    wipe = box(page, "#video-wipe")
    page.mouse.move(wipe["x"] + wipe["width"] * 0.7, wipe["y"] + wipe["height"] / 2)
    page.mouse.down()
    page.mouse.move(wipe["x"] + wipe["width"] * 0.25, wipe["y"] + wipe["height"] / 2, steps=5)
    page.mouse.up()
    assert abs(float(value(page, "#video-split")) - 25) <= 1
    split_matches(page, "#video-wipe", float(value(page, "#video-split")))
    page.wait_for_function(  # in sync: the input at a quarter of the result's time (4x slow motion)
        """() => {
          const r = document.getElementById('result'), s = document.getElementById('source');
          return r.currentTime > 0.5 && Math.abs(s.currentTime - r.currentTime / 4) < 0.2;
        }"""
    )
    shoot(page, "page-desktop")

    with page.expect_download() as download:
        job_item(page, "first.mp4").get_by_role("button", name="Download first.mp4").click()
    assert download.value.suggested_filename == "first_vinr_400x168_25fps.mp4"
    saved = tmp_path / "download.mp4"
    download.value.save_as(saved)
    with av.open(str(saved)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (400, 168)
        assert sum(1 for _ in container.decode(stream)) == 200
    assert audio_span(saved)[1] == pytest.approx(8.0, abs=0.1)  # the sample's 2 s of sound, slowed 4x


def expect_state(item, word: str, timeout: float = 120) -> None:
    wait_for(lambda: item.count() == 1 and item.locator(".badge").inner_text().lower() == word, timeout=timeout)


def test_preview_errors_in_view_number_steps_and_the_frame_wipe(serve, browser, tmp_path):
    """Page defects 1-4, 8 and 9: errors beside their field and in view, in words a person can act on;
    a failed preview takes the old picture down; number fields step to sensible values; the output line
    is checked; the wipe's handle and divider sit where the pointer is."""
    client = serve()
    page = browser()
    open_app(page, client)
    page.set_input_files("#file", str(SAMPLE))
    files_read(page, 1)
    assert "200 × 84 · 25 fps · 2.0 s · h264 · audio: aac" in page.inner_text("#files")

    page.get_by_label("Scale", exact=True).fill("3.5")  # the preview: the served default model
    page.get_by_label("At second").fill("1.1")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector("#compare:not([hidden])")
    assert value(page, "#after", "e => [e.naturalWidth, e.naturalHeight]") == [700, 294]
    assert "Output frame 56 of 100" in page.inner_text("#preview-caption")
    page.locator("#split").fill("30")  # keyboard and touch: a range input over the picture
    split_matches(page, "#frame-wipe", 30)
    picture = box(page, "#frame-wipe")
    page.mouse.click(picture["x"] + picture["width"] * 0.8, picture["y"] + picture["height"] / 2)
    assert abs(float(value(page, "#split")) - 80) <= 1
    split_matches(page, "#frame-wipe", float(value(page, "#split")))
    shoot(page, "page-preview")

    page.get_by_label("Scale", exact=True).fill("100")
    page.mouse.wheel(0, 2000)  # the field scrolled away, as a person scrolls to the Preview button
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector("#scale-error:not([hidden])")
    assert page.inner_text("#scale-error") == "Scale must be a number from 1 to 8 (it is 100)."
    assert in_view(page, "#scale-error"), "the error is out of view"
    field, error = box(page, "#scale"), box(page, "#scale-error")
    assert 0 <= error["y"] - (field["y"] + field["height"]) < 40, "the error is not beside its field"
    assert value(page, "#scale", "e => e.getAttribute('aria-invalid')") == "true"
    assert page.is_hidden("#compare"), "the earlier preview stayed up after a failed one"
    assert "megapixels" not in page.inner_text("#plan") and "Fix the setting" in page.inner_text("#plan")
    page.get_by_label("Scale", exact=True).fill("-3")
    assert "Scale must be a number from 1 to 8" in page.inner_text("#scale-error")
    page.get_by_label("Scale", exact=True).fill("2")
    assert page.is_hidden("#scale-error") and "400 × 168 at 50 fps" in page.inner_text("#plan")

    page.get_by_label("Multiple of the input's rate").fill("2")
    page.get_by_label("Multiple of the input's rate").press("ArrowUp")
    assert value(page, "#time-factor") == "2.5"
    page.get_by_text("Width", exact=True).click()
    page.get_by_label("Width (px)").fill("400")
    page.get_by_label("Width (px)").press("ArrowUp")
    assert value(page, "#width") == "402"
    page.get_by_label("Width (px)").fill("150")  # below the input's 200: refused beside the field
    assert "from 200 (the video's own)" in page.inner_text("#width-error")
    page.get_by_label("Width (px)").fill("400")
    page.get_by_text("Frames per second").click()
    page.get_by_label("fps", exact=True).fill("23.976")
    assert value(page, "#fps", "e => e.checkValidity()") and page.is_hidden("#fps-error")
    assert "400 × 168 at 23.976 fps" in page.inner_text("#plan")

    page.get_by_role("button", name="Remove bikes.mp4").click()  # the plan follows the files chosen
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 5000)
    page.set_input_files("#file", str(junk))
    files_read(page, 1)
    assert page.inner_text("#plan") == "Choose a video to see what it becomes."
    page.get_by_role("button", name="Preview").click()
    assert page.inner_text("#preview-error") == "None of the chosen files is a video this server can read."


def test_reload_cancel_delete_and_the_phone_layout_in_dark(serve, browser, long_clip):
    """Page defects 5, 6, 7 and 10 on a 390 px phone in dark mode: the job list updates by itself and
    after a reload, a canceled job stays listed as canceled, deleting asks first, no word is broken, every
    control is a 44 px touch target, and a job not started here is not listed."""
    client = serve()
    other = post_video(client, long_clip, {"scale": 1.5, "model": "tiny"}).json()["id"]  # not this browser's
    page = browser(PHONE, "dark")
    open_app(page, client)
    assert (
        page.evaluate("getComputedStyle(document.documentElement).backgroundColor") == "rgb(13, 17, 23)"
    )  # the system's
    assert "anyone who can reach it can list every job" in page.inner_text("#jobs-scope")
    page.set_input_files("#file", str(long_clip))
    files_read(page, 1)
    page.select_option("#model", "tiny")
    page.get_by_label("Scale", exact=True).fill("4")
    page.get_by_label("Multiple of the input's rate").fill("8")  # 960 frames: long enough to be caught running
    page.get_by_role("button", name="Start").click()
    item = job_item(page, "long.mp4")
    expect_state(item, "running")
    first = percent(item)
    cancel = item.get_by_role("button", name="Cancel long.mp4").element_handle()
    wait_for(lambda: percent(item) > first, timeout=60)  # nobody clicked: the list follows the job
    assert cancel.evaluate("e => e.isConnected"), "a refresh replaced the button under the pointer"
    assert "elapsed" in item.inner_text() and "frames" in item.inner_text()
    assert page.locator("#jobs li.job").count() == 1, "a job started elsewhere is listed"
    assert other not in page.inner_text("#jobs")

    gone = "A" * 22  # a job this browser remembers and the server no longer has: looked up alone, forgotten
    page.evaluate(
        "gone => { const ids = JSON.parse(localStorage.getItem('vinr-jobs'));"
        " localStorage.setItem('vinr-jobs', JSON.stringify([...ids, gone])); }",
        gone,
    )
    page.reload()  # the job and its progress come back
    page.wait_for_selector("#model option[value=tiny]", state="attached")
    expect_state(item, "running")
    wait_for(lambda: gone not in page.evaluate("localStorage.getItem('vinr-jobs')"))
    assert page.locator("#jobs li.job").count() == 1
    item.get_by_role("button", name="Watch long.mp4").click()  # the upload read back: the wipe works after a reload
    page.wait_for_function(
        """() => {
          const c = document.getElementById('source-canvas');
          return !c.hidden && c.width === 256 && c.height === 192;
        }"""
    )
    wait_for(lambda: percent(item) > 0, timeout=30)
    assert page.evaluate(BROKEN_WORDS, page.query_selector("main")) == []
    assert page.evaluate(SMALL_TARGETS) == []
    assert value(page, "html", "e => e.scrollWidth") <= 390, "the page scrolls sideways on a phone"
    shoot(page, "page-phone-dark")

    item.get_by_role("button", name="Cancel long.mp4").click()
    expect_state(item, "canceled")
    assert "Canceled at" in item.inner_text() and page.is_hidden("#player")
    time.sleep(2 * 1.1)  # two refreshes of the list later it is still there
    expect_state(item, "canceled")
    assert client.get(f"/jobs/{item.get_attribute('data-id')}").json()["state"] == "canceled"

    item.get_by_role("button", name="Delete long.mp4").click()
    page.get_by_role("button", name="Keep it").click()
    expect_state(item, "canceled")
    item.get_by_role("button", name="Delete long.mp4").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    wait_for(lambda: item.count() == 0)
    assert page.is_visible("#jobs-empty")

    page.get_by_role("button", name="Dark theme").click()  # the toggle wins over the system, and is kept
    assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") == "rgb(244, 246, 251)"
    page.reload()
    page.wait_for_selector("#model option[value=tiny]", state="attached")
    assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") == "rgb(244, 246, 251)"


def percent(item) -> int:
    return int(item.locator(".bar-track").get_attribute("aria-valuenow") or 0)


def test_api_key_entry_and_job_list(serve, browser, clip_with_audio):
    client = serve(api_keys=["key-one", "key-two"])
    mine = post_video(client, clip_with_audio, {"scale": 1.5, "model": "tiny"}, headers={"X-API-Key": "key-one"})
    post_video(client, clip_with_audio, {"scale": 1.5, "model": "tiny"}, headers={"X-API-Key": "key-two"})
    wait_for(
        lambda: client.get(mine.headers["location"], headers={"X-API-Key": "key-one"}).json()["state"] == "finished"
    )
    page = browser(PHONE)
    page.goto(str(client.base_url))
    page.wait_for_selector("#key-section:not([hidden])")
    page.get_by_label("Key", exact=True).fill("wrong")
    page.get_by_label("Key", exact=True).press("Enter")  # the keyboard is enough
    page.wait_for_selector("#key-error:not([hidden])")
    assert "That key was not accepted" in page.inner_text("#key-error")
    page.get_by_label("Key", exact=True).fill("key-one")
    page.get_by_role("button", name="Use key").click()
    page.wait_for_selector("#jobs li.job")
    rows = page.locator("#jobs li.job")
    assert rows.count() == 1 and "done" in rows.first.inner_text().lower()  # key-two's job is not listed
    assert "in.mp4" in rows.first.inner_text() and "96 × 72" in rows.first.inner_text()
    assert "The jobs of your API key." in page.inner_text("#jobs-scope")
    assert value(page, "html", "e => e.scrollWidth") <= 390, "the page scrolls sideways on a phone"
    shoot(page, "page-phone")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390px", "1440px"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_layout_at_both_widths_in_both_themes(serve, browser, scheme, viewport):
    """The page with a video chosen and a preview made, at a phone's and a desktop's width, in the system's
    light and dark themes: its colours, no sideways scrolling, no word broken, 44 px touch targets."""
    client = serve()
    page = browser(viewport, scheme)
    open_app(page, client)
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert background == {"light": "rgb(244, 246, 251)", "dark": "rgb(13, 17, 23)"}[scheme]
    assert value(page, "#theme", "e => e.getAttribute('aria-pressed')") == str(scheme == "dark").lower()
    page.set_input_files("#file", str(SAMPLE))
    files_read(page, 1)
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector("#compare:not([hidden])")
    assert value(page, "html", "e => e.scrollWidth") <= viewport["width"], "the page scrolls sideways"
    assert page.evaluate(BROKEN_WORDS, page.query_selector("body")) == []
    assert page.evaluate(SMALL_TARGETS) == []
    columns = page.evaluate("getComputedStyle(document.querySelector('main')).gridTemplateColumns").split()
    assert len(columns) == (1 if viewport is PHONE else 2)
    shoot(page, f"page-{viewport['width']}-{scheme}")
