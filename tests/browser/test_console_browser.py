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

from browser.harness import PASSWORD, STRAIGHT, Car, car_fixture, racer_bundle, start_car  # noqa: E402
from car.actuators import calibration as servo  # noqa: E402
from car.policy.bundle import pack_bundle, save_bundle  # noqa: E402
from car.policy.preprocess import DEEPRACER_SPEC  # noqa: E402
from model_factory import PPO_TAR, onnx_model  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
# Waits end on what the page shows, never on how fast a shared 2-core machine gets there: a patient
# default for every expect, and a longer one where the car converts a TensorFlow model.
expect.set_options(timeout=60_000)
CONVERSION_MS = 240_000
PHONE = {"width": 390, "height": 844}


car = car_fixture("browser")


@pytest.fixture(scope="module")
def playwright():
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright, tmp_path_factory):
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
    page.teleop_sent = []  # what the page sent over the teleop WebSocket
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: page.teleop_sent.append(payload)))
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
    expect(page.locator("#t-mode")).to_have_text("manual (waiting for teleop)")
    # the mode has its row and its buttons: the header does not say it again
    expect(page.locator("#status-line")).to_have_text(re.compile(r"^driving · \d+\.\d fps · ready: drive with"))
    # the model the car started with can be loaded again, never deleted (the server refuses it)
    startup = page.locator("tr[data-model=driving]")
    expect(startup.get_by_role("button", name="Load")).to_be_visible()
    expect(startup.get_by_role("button", name="Delete")).to_have_count(0)
    assert float(page.locator("#t-fps").inner_text()) > 0  # the stream is live, however busy the machine
    expect(page.locator("#t-caution")).to_have_text("–")  # the model asks for no caution
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's scripts cannot read the session


def test_upload_a_deepracer_model_and_load_it(page: Page, car: Car):
    page.set_input_files("#upload-file", str(PPO_TAR))
    page.click("#upload-button")
    expect(page.locator("#upload-message")).to_have_text(
        "deepracer_discrete_ppo installed: press Load to drive with it", timeout=CONVERSION_MS)
    row = page.locator("tr[data-model=deepracer_discrete_ppo]")
    expect(row).to_contain_text("Discrete, Clipped PPO")
    row.get_by_role("button", name="Load").click()
    expect(page.locator("#upload-message")).to_have_text(
        "deepracer_discrete_ppo loaded; the car is stopped until you start it", timeout=CONVERSION_MS)
    expect(page.locator("#t-model")).to_have_text("deepracer_discrete_ppo")
    expect(row).to_have_class("loaded")


def test_a_progress_answer_that_comes_late_never_overwrites_the_result(page: Page, car: Car):
    """A progress poll the server answered while the load ran can reach the page after the load's own
    answer (another connection, a busy machine): the page keeps the result. Here the load is held until
    the page has polled, and the polls until the page has said "loaded"; then they answer "switching (90%)"."""
    polls, loads = [], []
    page.route("**/api/isModelLoading", lambda route: polls.append(route))
    page.route("**/api/models/driving/*", lambda route: loads.append(route))
    message = page.locator("#upload-message")
    try:
        page.locator("tr[data-model=driving]").get_by_role("button", name="Load").click()
        deadline = time.monotonic() + 60
        while not (polls and loads) and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert polls and loads, f"the page sent {len(loads)} loads and {len(polls)} progress polls"
        loads[0].continue_()
        expect(message).to_have_text("driving loaded; the car is stopped until you start it")
        late = {"success": True, "isModelLoading": "loading", "job": "load", "model": "driving",
                "stage": "switching", "progress": 90}
        for poll in polls:
            with page.expect_request_finished(lambda request: request.url.endswith("/api/isModelLoading")):
                poll.fulfill(json=late)
        page.evaluate("new Promise((done) => setTimeout(done, 200))")  # the page's handlers of those answers ran
        expect(message).to_have_text("driving loaded; the car is stopped until you start it", timeout=1)
        expect(page.locator("#upload-progress")).to_be_hidden()
    finally:
        page.unroute("**/api/isModelLoading")
        page.unroute("**/api/models/driving/*")


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
    # camera frame to command: never 0.0 ms on the page, and in any one status at least the policy's own
    # time (the page and a later status are two samples of a figure that moves with the load)
    expect(page.locator("#t-latency")).to_have_text(re.compile(r"^\d+\.\d ms$"))
    assert float(page.locator("#t-latency").inner_text().split()[0]) > 0
    status = car.status()
    assert status["infer_ms"] > 0 and status["latency_ms"] >= status["infer_ms"] - 0.05  # each rounded for display
    page.click("#stop")
    expect(page.locator("#t-command")).to_have_text("0.00 / 0.00")


def test_drive_by_keyboard(page: Page, car: Car):
    page.click("#mode-manual")
    expect(page.locator("#mode-manual")).to_have_class("active")
    page.keyboard.down("ArrowUp")
    page.keyboard.down("KeyA")
    expect(page.locator("#t-command")).to_have_text("1.00 / 0.50")
    expect(page.locator("#t-mode")).to_have_text("manual (driven by teleop)")
    page.keyboard.up("KeyA")
    expect(page.locator("#t-command")).to_have_text("0.00 / 0.50")
    sent = len(page.teleop_sent)
    page.keyboard.up("ArrowUp")
    expect(page.locator("#t-command")).to_have_text("0.00 / 0.00")
    # The page itself let go (not the car's deadman): a neutral command followed the key-up.
    assert '{"steering":0,"throttle":0}' in page.teleop_sent[sent:]
    expect(page.locator("#status-line")).to_contain_text("ready: drive with the joystick, keys or a gamepad")


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
    car.server.console.service.node.ask("fault", "camera stale for 300 ms (limit 250 ms)")  # any latched fault
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
    expect(page.locator("#wizard .warning")).to_have_text("Lift the car: its wheels must turn freely.")
    expect(page.locator("#calib-pulse")).to_have_text("1.700 ms")  # the unit: 10 µs a step around 1.5 ms
    expect(page.locator("#calib-unit")).to_contain_text("each unit is 10 µs of pulse")
    page.fill("#calib-value", "500")  # beyond the servo's 2.5 ms: the car refuses, and Next does not keep it
    page.click("#calib-next")
    expect(page.locator("#calib-message")).to_contain_text("500 refused: pwm 500 is a 6500000 ns pulse")
    page.click("#calib-next")
    expect(page.locator("#calib-message")).to_contain_text("500 refused")
    expect(page.locator("#wizard-step")).to_contain_text("2/6")
    page.fill("#calib-value", "18")
    page.dispatch_event("#calib-value", "change")
    page.click("#calib-next")
    expect(page.locator("#wizard-step")).to_contain_text("3/6")
    page.click("#calib-minus")
    page.click("#calib-next")
    for step in (4, 5, 6):
        expect(page.locator("#wizard-step")).to_contain_text(f"{step}/6")
        page.click("#calib-next")
    expect(page.locator("#calib-message")).to_have_text("calibration saved")
    expect(page.locator("#t-mode")).to_have_text("manual (waiting for teleop)")
    saved = servo.load(car.state.calibration)
    assert saved.servo == servo.PulseRange(min=1_190_000, mid=1_470_000, max=1_680_000, polarity=1)
    assert saved.motor == servo.FACTORY_DEFAULT.motor


def test_every_request_stays_on_the_car(page: Page, car: Car):
    assert page.requests and all(url.startswith((car.url, car.url.replace("http", "ws"))) for url in page.requests)


def on_screen(page: Page, selector: str) -> bool:
    """Whether the element is wholly inside the viewport as the page stands (no scrolling)."""
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return bool(box) and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= size["width"] \
        and box["y"] + box["height"] <= size["height"]


def test_phone_screen(browser, car: Car, page: Page, tmp_path: Path):
    phone = browser.new_page()
    phone.set_viewport_size(PHONE)
    try:
        phone.goto(car.url)
        expect(phone.locator("#t-model")).not_to_have_text("–")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        # Camera and joystick together on the first screen, and the whole status line, e-stop included.
        assert on_screen(phone, "#camera") and on_screen(phone, "#joystick")
        phone.click("#estop")
        line = phone.locator("#status-line")
        expect(line).to_contain_text("EMERGENCY STOP (Start releases)")
        expect(line).to_have_class(re.compile("alarm"))
        assert on_screen(phone, "#status-line")
        assert line.evaluate("el => el.scrollWidth <= el.clientWidth && el.scrollHeight <= el.clientHeight")
        phone.screenshot(path=str(tmp_path / "phone-estop.png"))
        phone.click("#start")
        expect(line).not_to_have_class(re.compile("alarm"))
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


def continuous_bundle(work: Path, name: str) -> Path:
    """A continuous-action racer bundle (its type reads "Continuous, Soft actor critic" in the Models table)."""
    work.mkdir(parents=True, exist_ok=True)
    metadata = {"action_space": {"steering_angle": {"low": -30.0, "high": 30.0}, "speed": {"low": 0.5, "high": 2.0}},
                "action_space_type": "continuous", "training_algorithm": "sac", "sensor": ["FRONT_FACING_CAMERA"],
                "version": "5"}
    save_bundle(work / name, onnx_model(work / f"{name}.onnx", outputs=2), metadata, DEEPRACER_SPEC,
                cache_dir=work / "cache")
    return pack_bundle(work / name, work / f"{name}.tar.gz")


def test_phone_models_table_keeps_words_whole(browser, car: Car, page: Page, tmp_path: Path):
    archive = continuous_bundle(tmp_path / "work", "continuous_model")
    assert car.client().upload(archive, lambda sent, total: None).status == 200
    phone = browser.new_page()
    phone.set_viewport_size(PHONE)
    try:
        phone.goto(car.url)
        cell = phone.locator("tr[data-model=continuous_model] td").nth(1)
        expect(cell).to_have_text("Continuous, Soft actor critic")
        cell.scroll_into_view_if_needed()
        lines = cell.evaluate("""td => { const range = document.createRange();
            const text = td.firstChild; const start = text.data.indexOf("Continuous");
            range.setStart(text, start); range.setEnd(text, start + "Continuous".length);
            return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; }""")
        assert lines == 1  # "Continuous" on one line, not "Continuou" / "s"
        phone.locator("#models").screenshot(path=str(tmp_path / "phone-models.png"))
    finally:
        phone.close()


def test_overlay_arrow_is_grey_at_zero_throttle(page: Page, car: Car):
    page.click("#mode-manual")
    expect(page.locator("#t-command")).to_have_text("0.00 / 0.00")
    r, g, b, _ = page.evaluate("""() => { const c = document.getElementById("overlay");
        return [...c.getContext("2d").getImageData(c.width / 2, c.height - 12 - 15, 1, 1).data]; }""")
    assert max(r, g, b) - min(r, g, b) < 16 and r > 100, (r, g, b)  # grey, not the green of forward


def test_status_and_telemetry_are_explained(page: Page):
    expect(page.locator(".legend")).to_contain_text("Latency: from a camera frame to the drive command")
    expect(page.locator(".legend")).to_contain_text("Shift: how unlike the model's training images")


def test_a_vanished_car_is_unmistakable_and_its_controls_are_off(playwright, tmp_path: Path):
    """The car's console goes away for real; the page says so where the state was, and does not pretend.
    A browser of its own: cookies are per host, not per port, so a login here would end the other tests'."""
    car = start_car(tmp_path, racer_bundle(tmp_path / "models", "driving", STRAIGHT))
    phone = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
    lost = phone.new_page(viewport=PHONE)
    try:
        lost.goto(car.url)
        lost.fill("#password", PASSWORD)
        lost.click("button[type=submit]")
        lost.click("#mode-auto")
        expect(lost.locator("#mode-auto")).to_have_class("active")
        lost.click("#start")
        expect(lost.locator("#t-mode")).to_have_text("autonomous (running)")
        car.server.stop()
        expect(lost.locator("#offline")).to_be_visible()
        expect(lost.locator("#offline")).to_contain_text("Connection to the car lost (cannot reach it)")
        expect(lost.locator("#status-line")).to_have_text("CONNECTION LOST")
        expect(lost.locator("#t-mode")).to_have_text("–")
        expect(lost.locator("#t-watchdog")).to_have_text("–")
        expect(lost.locator("#t-command")).to_have_text("–")
        expect(lost.locator("#start")).not_to_have_class(re.compile("active"))
        assert lost.evaluate("document.querySelector('main').inert")
        assert on_screen(lost, "#offline")
        lost.screenshot(path=str(tmp_path / "phone-lost.png"))
    finally:
        phone.close()
        car.local.stop()


def test_the_page_comes_back_with_the_car(page: Page, car: Car):
    page.route("**/api/status", lambda route: route.abort("connectionrefused"))
    try:
        expect(page.locator("#offline")).to_be_visible()
        assert page.evaluate("document.querySelector('main').inert")
    finally:
        page.unroute("**/api/status")
    expect(page.locator("#offline")).to_be_hidden()
    expect(page.locator("#t-mode")).not_to_have_text("–")
    assert not page.evaluate("document.querySelector('main').inert")


def test_a_reload_finds_the_car_still_in_calibration_mode(page: Page, car: Car):
    page.click("#stop")
    assert car.client().request("POST", "/api/set_calibration_mode").status == 200  # a tab that went away
    page.reload()
    expect(page.locator("#wizard")).to_be_visible()
    expect(page.locator("#wizard-note")).to_have_text(
        "the car is still in calibration mode from an earlier visit: carry on, or Cancel to leave it")
    expect(page.locator("#wizard .warning")).to_be_visible()
    page.click("#calib-cancel")
    expect(page.locator("#t-mode")).to_have_text("manual (waiting for teleop)")


def test_closing_the_wizard_tab_leaves_calibration_mode(browser, car: Car, page: Page):
    tab = browser.new_page()
    tab.goto(car.url)
    tab.click("#calib-start")
    expect(tab.locator("#wizard-step")).to_contain_text("1/6")
    car.wait_for(lambda: car.status()["mode"] == "calibration", what="calibration mode")
    tab.close(run_before_unload=True)
    car.wait_for(lambda: car.status()["mode"] == "manual", timeout=30, what="manual mode after the tab closed")


def test_log_out(page: Page, car: Car):
    """Last: it ends the session the other tests share."""
    page.click("#logout")
    expect(page).to_have_url(f"{car.url}/login")
    page.goto(car.url)
    expect(page).to_have_url(f"{car.url}/login")
