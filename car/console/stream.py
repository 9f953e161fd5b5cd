"""The live camera as MJPEG (multipart/x-mixed-replace): every browser shows it in an <img>.

Frames are encoded once however many viewers there are, at most `max_fps` a second, and only
while someone watches; encoding runs in a worker thread so the event loop keeps serving teleop.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import cv2
from starlette.concurrency import run_in_threadpool

from car.console.node import ConsoleNode, Frame

BOUNDARY = "racerframe"
JPEG_QUALITY = 80


class JpegCache:
    def __init__(self, node: ConsoleNode):
        self.node = node
        self._lock = threading.Lock()
        self._number = 0
        self._jpeg = b""

    def encode(self, frame: Frame) -> bytes:
        with self._lock:
            if frame.number != self._number:
                ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise RuntimeError("JPEG encoding failed")
                self._number, self._jpeg = frame.number, data.tobytes()
            return self._jpeg


async def mjpeg(cache: JpegCache, max_fps: float, stopping: threading.Event,
                ended: asyncio.Event) -> AsyncIterator[bytes]:
    """Multipart parts until the console stops (an endless stream would otherwise hold its shutdown)
    or `ended` is set (the viewer's login ended), which ends the stream within a frame period."""
    last = 0
    period = 1.0 / max_fps
    while not stopping.is_set() and not ended.is_set():
        frame = cache.node.frame
        if frame is not None and frame.number != last:
            last = frame.number
            jpeg = await run_in_threadpool(cache.encode, frame)
            yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                   + jpeg + b"\r\n")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ended.wait(), period)
