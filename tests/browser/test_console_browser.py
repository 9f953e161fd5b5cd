"""The console page in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
log in, upload and load a model, drive autonomously and watch it in the stream, drive by keyboard,
calibrate with the wizard, on a desktop and a phone-sized screen, with no request leaving the car."""
from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (the Makefile installs it for CI)",
                allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

from browser.harness import PASSWORD, Car, car_fixture  # noqa: E402
from calibration import servo  # noqa: E402
from model_factory import PPO_TAR  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


car = car_fixture("browser")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


@pytest.fixture(scope="module")
def page(browser, car) -> Page:
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.requests = requests
    page.goto(car.url)
    expect(page).to_have_url(f"{car.url}/login")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_have_text("wrong password")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{car.url}/")
    return page


def screenshot(page: Page, selector: str) -> np.ndarray:
    png = np.frombuffer(page.locator(selector).screenshot(), np.uint8)
    return cv2.imdecode(png, cv2.IMREAD_COLOR).astype(np.int16)


def test_login_shows_the_car(page: Page):
    expect(page.locator("#t-model")).to_have_text("driving")
    expect(page.locator("#t-mode")).to_have_text("manual")
    assert float(page.locator("#t-fps").inner_text()) > 5
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's scripts cannot read the session


def test_upload_a_deepracer_model_and_load_it(page: Page, car: Car):
    page.set_input_files("#upload-file", str(PPO_TAR))
    page.click("#upload-button")
    expect(page.locator("#upload-message")).to_have_text(
        "deepracer_discrete_ppo installed: press Load to drive with it", timeout=30_000)
    row = page.locator("tr[data-model=deepracer_discrete_ppo]")
    expect(row).to_contain_text("Discrete, Clipped PPO")
    row.get_by_role("button", name="Load").click()
    expect(page.locator("#upload-message")).to_have_text(
        "deepracer_discrete_ppo loaded; the car is stopped until you start it", timeout=30_000)
    expect(page.locator("#t-model")).to_have_text("deepracer_discrete_ppo")
    expect(row).to_have_class("loaded")


def test_refused_upload_says_why(page: Page, car: Car, tmp_path: Path):
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"definitely not gzip")
    page.set_input_files("#upload-file", str(bad))
    page.click("#upload-button")
    expect(page.locator("#upload-message")).to_have_text(
        "upload refused: not a .tar.gz archive (no gzip header)", timeout=10_000)


def test_autonomous_drive_moves_the_car_in_the_stream(page: Page, car: Car):
    page.click("#mode-auto")
    expect(page.locator("#mode-auto")).to_have_class("active")
    page.click("#start")
    expect(page.locator("#t-mode")).to_have_text("autonomous (running)")
    before = screenshot(page, "#camera")
    path = [(car.sim.info.x, car.sim.info.y)]
    for _ in range(30):  # the path, not the displacement: this model steers hard and may drive in circles
        time.sleep(0.05)
        path.append((car.sim.info.x, car.sim.info.y))
    after = screenshot(page, "#camera")
    assert np.abs(after - before).mean() > 1.0
    assert np.hypot(*np.diff(np.array(path), axis=0).T).sum() > 0.3
    expect(page.locator("#t-latency")).to_have_text("0.0 ms")
    page.click("#stop")
    expect(page.locator("#t-command")).to_have_text("0.00 / 0.00")


def test_drive_by_keyboard(page: Page, car: Car):
    page.click("#mode-manual")
    expect(page.locator("#mode-manual")).to_have_class("active")
    page.keyboard.down("ArrowUp")
    page.keyboard.down("KeyA")
    expect(page.locator("#t-command")).to_have_text("1.00 / 0.50")
    page.keyboard.up("KeyA")
    expect(page.locator("#t-command")).to_have_text("0.00 / 0.50")
    released = time.monotonic()
    page.keyboard.up("ArrowUp")
    expect(page.locator("#t-command")).to_have_text("0.00 / 0.00")
    stop = next(when for when, s, t in car.driver.log if when > released and (s, t) == (0.0, 0.0))
    assert stop - released < 0.25


def test_drive_by_gamepad(page: Page, car: Car):
    pad = "Object.defineProperty(navigator, 'getGamepads', {configurable: true, value: () => %s})"
    page.click("#mode-manual")
    page.evaluate(pad % "[{axes: [-0.5, -1.0], buttons: []}]")
    expect(page.locator("#t-command")).to_have_text("0.50 / 0.50")
    page.evaluate(pad % "[{axes: [0.05, 0.0], buttons: [{value: 0}, {value: 0, pressed: false}]}]")
    expect(page.locator("#t-command")).to_have_text("0.00 / 0.00")
    page.evaluate(pad % "[]")


def test_emergency_stop_button_and_escape_key(page: Page, car: Car):
    page.click("#estop")
    expect(page.locator("#estop")).to_have_class("estop latched")
    page.click("#mode-auto")
    page.click("#start")
    expect(page.locator("#estop")).to_have_class("estop")
    page.keyboard.press("Escape")
    expect(page.locator("#estop")).to_have_class("estop latched")
    expect(page.locator("#status-line")).to_contain_text("EMERGENCY STOP (Start releases)")
    assert car.status()["running"] is False
    page.click("#mode-manual")
    page.click("#start")
    expect(page.locator("#estop")).to_have_class("estop")
    car.runtime.command("fault", "camera stale for 300 ms (limit 250 ms)")  # any latched fault
    expect(page.locator("#status-line")).to_contain_text(
        "STOPPED: camera stale for 300 ms (limit 250 ms) (Start, or let go of the throttle, to drive again)")
    expect(page.locator("#start")).to_have_class(re.compile("attention"))
    page.click("#start")
    expect(page.locator("#start")).not_to_have_class(re.compile("attention"))


def test_calibration_wizard(page: Page, car: Car):
    page.click("#calib-start")
    expect(page.locator("#wizard-step")).to_contain_text("1/6 Steering: set the wheels straight ahead")
    expect(page.locator("#t-mode")).to_have_text("calibration")
    expect(page.locator("#calib-value")).to_have_value("-5")
    page.click("#calib-plus")
    page.click("#calib-plus")
    expect(page.locator("#calib-value")).to_have_value("-3")
    page.click("#calib-next")
    expect(page.locator("#wizard-step")).to_contain_text("2/6")
    page.fill("#calib-value", "18")
    page.dispatch_event("#calib-value", "change")
    page.click("#calib-next")
    page.click("#calib-minus")
    page.click("#calib-next")
    for step in (4, 5, 6):
        expect(page.locator("#wizard-step")).to_contain_text(f"{step}/6")
        page.click("#calib-next")
    expect(page.locator("#calib-message")).to_have_text("calibration saved")
    expect(page.locator("#t-mode")).to_have_text("manual")
    saved = servo.load(car.state.calibration)
    assert saved.servo == servo.PulseRange(min=1_190_000, mid=1_470_000, max=1_680_000, polarity=1)
    assert saved.motor == servo.FACTORY_DEFAULT.motor


def test_every_request_stays_on_the_car(page: Page, car: Car):
    assert page.requests and all(url.startswith((car.url, car.url.replace("http", "ws"))) for url in page.requests)


def test_phone_screen(browser, car: Car, page: Page):
    phone = browser.new_page()
    phone.set_viewport_size({"width": 390, "height": 844})
    try:
        phone.goto(car.url)
        expect(phone.locator("#t-model")).not_to_have_text("–")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        for selector in ("#estop", "#joystick", "#upload-button", "#calib-start"):
            box = phone.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
        phone.click("#mode-manual")
        phone.locator("#joystick").scroll_into_view_if_needed()
        stick = phone.locator("#joystick").bounding_box()
        x, y = stick["x"] + stick["width"] / 2, stick["y"] + stick["height"] / 2
        phone.mouse.move(x, y)
        phone.mouse.down()
        phone.mouse.move(x, y - stick["height"] / 2, steps=5)
        expect(phone.locator("#t-command")).to_have_text("0.00 / 0.50")
        phone.mouse.up()
        expect(phone.locator("#t-command")).to_have_text("0.00 / 0.00")
    finally:
        phone.close()
