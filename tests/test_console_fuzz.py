"""A bounded fuzzer (hypothesis) over every console route: hostile JSON, numbers past every limit,
deep nesting, wrong types, odd path parameters and content types. No answer may be a 5xx.

Requests go over real HTTP to a running console, authenticated with an API token, so every route
reaches its handler. The count of requests and 5xx answers is printed (run with -s to see it).
"""
from __future__ import annotations

import http.client
import json

from hypothesis import HealthCheck, given, settings, strategies as st
from starlette.routing import Route

from browser.harness import Car, car_fixture

KEYS = ["drive_mode", "start_stop", "throttle", "angle", "max_speed", "filenames", "name", "days", "min", "mid",
        "max", "polarity", "pwm", "estop", "steering", "password"]
HOSTILE_NUMBERS = st.sampled_from([10 ** 400, -(10 ** 4299), 1e308, -1e308, 2 ** 63, 0.1, -1, 0, 1, 100, 101])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), HOSTILE_NUMBERS,
                    st.text(max_size=20), st.sampled_from(["manual", "auto", "start", "stop", "angle", "driving"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
RAW_BODIES = st.sampled_from([
    b"", b"null", b"[]", b"{", b"NaN", b'{"throttle": NaN}', b'{"throttle": Infinity}',
    b'{"throttle": ' + b"9" * 4301 + b"}", b'{"pwm": ' + b"1" * 5000 + b"}", b"[" * 3000 + b"]" * 3000,
    b'{"a": ' * 50 + b"1" + b"}" * 50, b"\xff\xfe\x00", b'{"filenames": ["' + b"a" * 5000 + b'"]}',
])
SEGMENTS = st.one_of(st.sampled_from(["angle", "throttle", "driving", "model", "..", "%2e%2e", "x" * 300, "%00",
                                      "00000000"]),
                     st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%{}"),
                             min_size=1, max_size=12))
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x",
                                 "multipart/form-data", "application/x-www-form-urlencoded", ""])
# ending the fuzzer's own login or latching the car is not hostile input; the stream never ends by itself;
# the battery level takes no input and is 503 by design on a car without a battery monitor
SKIP = {"/logout", "/api/emergency_stop", "/api/camera.mjpg", "/api/get_battery_level"}

car = car_fixture("fuzz")
TALLY = {"requests": 0, "5xx": 0}


def routes(car: Car) -> list[tuple[str, str]]:
    found = []
    for route in car.server.app.routes:
        if isinstance(route, Route) and route.path not in SKIP:
            found += [(method, route.path) for method in sorted(route.methods - {"HEAD"})]
    return found


@st.composite
def requests(draw, table: list[tuple[str, str]]) -> tuple[str, str, bytes, str]:
    method, template = draw(st.sampled_from(table))
    path = "/".join(draw(SEGMENTS) if part.startswith("{") else part for part in template.split("/"))
    if draw(st.booleans()):
        body = draw(RAW_BODIES)
    else:
        obj = draw(st.dictionaries(st.sampled_from(KEYS), st.one_of(VALUES, HOSTILE_NUMBERS), max_size=5))
        body = json.dumps(obj).encode()
    return method, path, body, draw(CONTENT_TYPES)


def test_no_route_answers_5xx_to_hostile_input(car):
    client = car.client()
    client.request("GET", "/api/server_ready")
    token = client.known.get(client.address.key)["token"]
    failures: list[tuple] = []

    @settings(max_examples=600, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(requests(routes(car)))
    def fuzz(sent: tuple[str, str, bytes, str]) -> None:
        method, path, body, content_type = sent
        conn = http.client.HTTPConnection("127.0.0.1", car.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}",
                                                           "Content-Type": content_type})
            response = conn.getresponse()
            status, data = response.status, response.read()
        finally:
            conn.close()
        TALLY["requests"] += 1
        if status >= 500:
            TALLY["5xx"] += 1
            failures.append((method, path, body[:80], status, data[:200]))

    fuzz()
    print(f"\nfuzzer: {TALLY['requests']} requests, {TALLY['5xx']} answered 5xx")
    assert TALLY["requests"] >= 500
    assert failures == []


MESSAGES = st.one_of(
    st.dictionaries(st.sampled_from(["steering", "throttle", "estop"]), st.one_of(VALUES, HOSTILE_NUMBERS),
                    max_size=3).map(json.dumps),
    RAW_BODIES.map(lambda raw: raw[:1000].decode("utf-8", "replace")),
    st.text(max_size=200)).filter(lambda text: len(text.encode()) <= 4096)  # larger frames: 1009, tested apart
SENTINEL = "[]"  # always answered with an error: every reply before it belongs to the fuzzed message


def test_the_teleop_socket_answers_hostile_messages_and_stays_open(car):
    client = car.client()
    client.request("POST", "/api/drive_mode", {"drive_mode": "manual"})
    sent = [0]
    with client.websocket("/api/teleop") as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"

        @settings(max_examples=300, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(MESSAGES)
        def fuzz(message: str) -> None:
            ws.send(message)
            ws.send(SENTINEL)
            sent[0] += 1
            while True:  # raises ConnectionClosed if the console dropped the socket
                reply = json.loads(ws.recv(timeout=5))
                assert reply["type"] in ("error", "estop", "deadman"), reply
                if reply.get("reason") == "a teleop message must be a JSON object":
                    break

        fuzz()
    print(f"\nteleop fuzzer: {sent[0]} messages, the socket stayed open")
    client.request("POST", "/api/start_stop", {"start_stop": "stop"})
