"""Console security: nothing open but /login and /api/server_ready, sessions with CSRF, rate-limited
logins, API tokens, the stored password, HTTPS with a pinned self-signed certificate."""
from __future__ import annotations

import json
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from browser.harness import PASSWORD, STRAIGHT, car_fixture, racer_bundle, start_car
from car.console.auth import (
    Auth,
    LoginLimiter,
    LoginRefused,
    PasswordError,
    generate_password,
    hash_password,
    set_password,
    verify_password,
)
from car.console.state import StateDir
from car.console.tls import ensure_certificate
from racer.laptop.client import CarAddress, CarClient, ClientError, KnownCars

REPO = Path(__file__).resolve().parents[1]
RACER = ("import argparse, sys; from racer.commands import console; parser = argparse.ArgumentParser(); "
         "console.register(parser.add_subparsers()); args = parser.parse_args(); sys.exit(args.func(args))")
PUBLIC = {"/login", "/api/server_ready"}


car = car_fixture("security")


def concrete(path: str) -> str:
    return path.replace("{folder}", "x").replace("{model}", "model").replace("{kind}", "angle") \
        .replace("{token_id}", "00000000")


def test_every_route_but_login_and_server_ready_refuses_an_unauthenticated_request(car):
    routes = car.server.app.routes
    checked = set()
    for route in routes:
        if isinstance(route, Route):
            for method in sorted(route.methods - {"HEAD"}):
                status, headers, body = car.request(method, concrete(route.path), b"{}")
                if route.path in PUBLIC:
                    assert status in (200, 401), (method, route.path, status)
                    continue
                assert status == 401, (method, route.path, status)
                assert json.loads(body) == {"success": False,
                                            "reason": "log in first (POST /login) or send an API token"}
                checked.add((method, route.path))
        elif isinstance(route, WebSocketRoute):
            with pytest.raises(InvalidStatus) as refused:
                connect(f"ws://127.0.0.1:{car.port}{route.path}", open_timeout=5)
            assert refused.value.response.status_code == 403
            checked.add(("WS", route.path))
        else:
            assert isinstance(route, Mount)
            status, _, _ = car.request("GET", f"{route.path}/app.js")
            assert status == 401
            checked.add(("GET", route.path))
    assert len(checked) >= 28
    assert {("POST", "/api/uploadModels"), ("WS", "/api/teleop"), ("GET", "/api/camera.mjpg"),
            ("GET", "/static")} <= checked
    assert car.request("GET", "/no/such/route")[0] == 401
    assert car.request("GET", "/", headers={"Accept": "text/html"})[1]["location"] == "/login"
    assert car.request("GET", "/api/server_ready")[0] == 200
    assert car.request("GET", "/login")[0] == 200


def test_the_login_page_says_where_the_first_password_is(car):
    status, _, body = car.request("GET", "/login")
    page = body.decode()
    assert status == 200 and "shown once" not in page
    assert "<code>console/first-password</code> in its state dir" in page and "racer passwd --state-dir DIR" in page


def test_a_wrong_bearer_token_is_refused(car):
    status, _, body = car.request("GET", "/api/status", headers={"Authorization": "Bearer racer_00_nope"})
    assert status == 401 and json.loads(body)["reason"] == "invalid, expired or revoked API token"


def test_session_cookie_is_httponly_strict_and_state_changes_need_the_csrf_token(car):
    status, headers, _ = car.request("POST", "/login", urlencode({"password": PASSWORD}).encode(),
                                     {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303 and headers["location"] == "/"
    cookie_flags = headers["set-cookie"].lower()
    assert "httponly" in cookie_flags and "samesite=strict" in cookie_flags and "secure" not in cookie_flags
    cookie, csrf = car.login()
    assert car.request("GET", "/api/status", headers={"Cookie": cookie})[0] == 200
    body = {"start_stop": "stop"}
    assert car.request("POST", "/api/start_stop", body, {"Cookie": cookie})[0] == 403
    assert car.request("POST", "/api/start_stop", body, {"Cookie": cookie, "X-CSRFToken": "forged"})[0] == 403
    assert car.request("GET", "/api/set_calibration_mode", headers={"Cookie": cookie})[0] == 403
    assert car.request("POST", "/api/start_stop", body, {
        "Cookie": cookie, "X-CSRFToken": csrf, "Origin": "http://evil.example"})[0] == 403
    assert car.request("POST", "/api/start_stop", body, {
        "Cookie": cookie, "X-CSRFToken": csrf, "Origin": car.url})[0] == 200
    with pytest.raises(InvalidStatus):
        connect(f"ws://127.0.0.1:{car.port}/api/teleop", additional_headers={"Cookie": cookie}, open_timeout=5)
    with connect(f"ws://127.0.0.1:{car.port}/api/teleop?csrf={csrf}", additional_headers={"Cookie": cookie},
                 open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
    assert car.request("POST", "/logout", headers={"Cookie": cookie, "X-CSRFToken": csrf})[0] == 200
    assert car.request("GET", "/api/status", headers={"Cookie": cookie})[0] == 401


def test_logins_are_rate_limited(car):
    limiter = car.server.console.access.auth.limiter
    try:
        for _ in range(5):
            status, _, body = car.request("POST", "/login", urlencode({"password": "guess"}).encode(), {
                "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
            assert (status, json.loads(body)["reason"]) == (401, "wrong password")
        status, headers, body = car.request("POST", "/login", urlencode({"password": PASSWORD}).encode(), {
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        assert status == 429 and int(headers["retry-after"]) > 0 and "too many" in json.loads(body)["reason"]
        status, _, page = car.request("POST", "/login", urlencode({"password": PASSWORD}).encode(), {
            "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 429 and b"too many failed logins" in page
    finally:
        limiter.succeeded("127.0.0.1")


def test_limiter_backs_off_per_client_only_and_forgets():
    now = [0.0]
    limiter = LoginLimiter(free=2, backoff_s=10.0, max_backoff_s=40.0, forget_s=100.0, tracked=3,
                           clock=lambda: now[0])
    limiter.failed("a")
    assert limiter.retry_after("a") == 0
    limiter.failed("a")
    assert limiter.retry_after("a") == 10 and limiter.retry_after("b") == 0
    now[0] = 10.0
    limiter.failed("a")
    assert limiter.retry_after("a") == 20  # doubles with each further failure
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == 40  # capped
    for client in ("b", "c", "d"):  # many clients never block another one
        limiter.failed(client)
        limiter.failed(client)
    assert limiter.retry_after("e") == 0
    assert limiter.retry_after("a") == 0  # the oldest record was forgotten to bound memory
    now[0] = 200.0
    assert limiter.retry_after("d") == 0


def test_api_tokens_are_created_listed_without_secrets_and_revoked(car):
    client = car.client()
    cookie, csrf = car.login()
    status, _, body = car.request("POST", "/api/tokens", {"name": "ci script"}, {"Cookie": cookie, "X-CSRFToken": csrf})
    assert status == 200, body
    created = json.loads(body)
    token = created["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert car.request("GET", "/api/status", headers=headers)[0] == 200
    session = {"Cookie": cookie, "X-CSRFToken": csrf}
    listed = json.loads(car.request("GET", "/api/tokens", headers=session)[2])["tokens"]
    assert {"id": created["id"], "name": "ci script", "expires": created["expires"]}.items() <= next(
        t for t in listed if t["id"] == created["id"]).items()
    assert all(set(t) == {"id", "name", "created", "expires"} for t in listed)
    assert token not in car.state.tokens.read_text()
    # a token lists and revokes only itself: the laptop's token cannot see or revoke the script's
    listed = json.loads(car.request("GET", "/api/tokens", headers=headers)[2])["tokens"]
    assert [t["id"] for t in listed] == [created["id"]]
    laptop_tokens = client.request("GET", "/api/tokens").body["tokens"]
    assert len(laptop_tokens) == 1 and laptop_tokens[0]["id"] != created["id"]
    refused = client.request("DELETE", f"/api/tokens/{created['id']}")
    assert refused.status == 403 and "only itself" in refused.reason
    assert car.request("GET", "/api/status", headers=headers)[0] == 200
    assert car.request("DELETE", f"/api/tokens/{created['id']}", headers=session)[0] == 200
    assert car.request("GET", "/api/status", headers=headers)[0] == 401
    assert car.request("DELETE", f"/api/tokens/{created['id']}", headers=session)[0] == 404


def test_password_is_stored_as_a_salted_scrypt_hash_readable_only_by_its_owner(tmp_path):
    stored = hash_password("s3cret-pass")
    assert stored.startswith("scrypt$32768$8$1$") and "s3cret" not in stored
    assert stored != hash_password("s3cret-pass")
    assert verify_password("s3cret-pass", stored) and not verify_password("s3cret-pasS", stored)
    assert not verify_password("x", "md5$abc")
    state = StateDir(tmp_path / "state")
    set_password(state, "s3cret-pass-phrase")
    assert stat.S_IMODE(state.password.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.secrets.stat().st_mode) == 0o700
    with pytest.raises(PasswordError):
        set_password(state, "short")
    words = generate_password().split("-")
    assert len(words) == 4 and all(len(w) == 5 for w in words)


def test_changing_the_password_ends_sessions_and_revokes_tokens(tmp_path):
    state = StateDir(tmp_path / "state")
    set_password(state, "first password")
    auth = Auth(state)
    sid, _ = auth.login("first password", "me")
    _, token, _ = auth.create_token("laptop")
    assert auth.session(sid) and auth.token_valid(token)
    result = subprocess.run([sys.executable, "-c", RACER, "passwd", "--state-dir", str(state.root)],
                            input="second password\n", capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert auth.session(sid) is None and not auth.token_valid(token)
    with pytest.raises(LoginRefused):
        auth.login("first password", "me")
    assert auth.login("second password", "me")


def test_https_certificate_is_made_once_and_pinned_on_first_use(tmp_path):
    car = start_car(tmp_path, racer_bundle(tmp_path / "models", "driving", STRAIGHT), tls=True)
    try:
        assert car.url.startswith("https://")
        fingerprint = car.server.console.access.site.fingerprint
        notices: list[str] = []
        known = KnownCars(tmp_path / "laptop" / "cars.json")
        client = CarClient(CarAddress.parse(car.url), lambda: PASSWORD, notices.append, known)
        assert client.request("GET", "/api/status").body["fingerprint"] == fingerprint
        assert len(notices) == 1 and fingerprint in notices[0]
        assert stat.S_IMODE(known.path.stat().st_mode) == 0o600
        again: list[str] = []
        CarClient(CarAddress.parse(car.url), lambda: "unused", again.append, known).request("GET", "/api/status")
        assert again == []

        status, headers, _ = car.request("POST", "/login", urlencode({"password": PASSWORD}).encode(),
                                         {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303 and "secure" in headers["set-cookie"].lower()

        impostor = ensure_certificate(tmp_path / "other", "127.0.0.1")
        known.update(CarAddress.parse(car.url).key, certificate=impostor.cert.read_text())
        with pytest.raises(ClientError, match="different certificate"):
            CarClient(CarAddress.parse(car.url), lambda: PASSWORD, print, known).request("GET", "/api/status")
        fresh = KnownCars(tmp_path / "fresh.json")
        with pytest.raises(ClientError, match="not AA:BB"):
            CarClient(CarAddress.parse(car.url), lambda: PASSWORD, print, fresh,
                      expect_fingerprint="AA:BB").request("GET", "/api/status")
        with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", car.port)) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    finally:
        car.stop()
    assert car.state.tls.joinpath("key.pem").stat().st_mode & 0o077 == 0
    restarted = start_car(tmp_path, racer_bundle(tmp_path / "models2", "driving", STRAIGHT), tls=True)
    try:
        assert restarted.server.console.access.site.fingerprint == fingerprint
    finally:
        restarted.stop()


def test_car_addresses_default_to_https_except_on_loopback():
    assert CarAddress.parse("deepracer.local") == CarAddress("https", "deepracer.local", 443)
    assert CarAddress.parse("10.0.0.5:8443") == CarAddress("https", "10.0.0.5", 8443)
    assert CarAddress.parse("127.0.0.1:8080") == CarAddress("http", "127.0.0.1", 8080)
    assert CarAddress.parse("http://[::1]:9000").netloc == "[::1]:9000"
    with pytest.raises(ClientError):
        CarAddress.parse("ftp://car")
