"""Model uploads: the request body streamed to disk, then checked, converted and installed.

Nothing of an archive is unpacked before every member has been checked (car.policy.archive), and
nothing reaches the model folder before the bundle has loaded, compiled and run a blank frame
to a finite output in the sandbox (car.policy.sandbox: a child process with a memory cap and a
time limit, so a hostile model cannot freeze or kill the car). Each step works inside the state
directory's uploads/ folder and the install is one atomic rename (or exchange), so a failure at
any point leaves the installed models as they were; what a crash leaves in uploads/ is removed at the
next start. One upload runs at a
time, within a wall-clock limit, and its file name is checked from the part's headers, before any
of the body is stored: spaces become `_` as on the stock console, anything else unsafe is refused.
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
import shutil
import tempfile
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from car.console.errors import ApiError, storage_error
from car.console.models import ModelStore, check_folder_name
from car.console.state import remove_all
from car.control.modes import brief
from car.policy.archive import MAX_UNPACKED_BYTES, ArchiveError, Member, extract, scan, shown
from car.policy.bundle import METADATA_FILE, RACER_FILE, BundleError, load_bundle

ARCHIVE_SUFFIX = re.compile(r"\.(tar\.gz|tgz)$", re.IGNORECASE)
MAX_JSON_BYTES = 1 << 20
MAX_FORM_OVERHEAD = 64 << 10
TAR_HEADER_BYTES = 4096


@dataclass(frozen=True)
class UploadLimits:
    """Request size (bytes), what the archive may unpack to, its member count, and the wall-clock
    seconds one upload may take from its first byte to the end of its body."""

    request_bytes: int = 64 << 20
    unpacked_bytes: int = MAX_UNPACKED_BYTES
    members: int = 1000
    seconds: float = 600.0


def folder_for(filename: str) -> str:
    """The model folder an uploaded file name installs to: the name without .tar.gz, spaces as `_`
    (`demo model v2.tar.gz` -> `demo_model_v2`); ApiError(400) for a path or an unsafe name."""
    if "/" in filename or "\\" in filename:
        raise ApiError(400, f"file name {brief(filename, 60)} must not contain a path")
    if not ARCHIVE_SUFFIX.search(filename):
        raise ApiError(400, f"{brief(filename, 60)} is not a .tar.gz model archive")
    return check_folder_name(ARCHIVE_SUFFIX.sub("", filename).replace(" ", "_"))


class UploadSlot:
    """One upload at a time, from its first byte to its install; used on the event loop only."""

    def __init__(self) -> None:
        self.busy = False

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        if self.busy:
            raise ApiError(409, "another upload is in progress; send this one when it has finished")
        self.busy = True
        try:
            yield
        finally:
            self.busy = False


def remove_stale(directory: Path) -> int:
    """Remove what a crash left in the uploads folder (partial archives, staging folders): the count."""
    return remove_all(directory.iterdir())


class _FilePart:
    """Collects the multipart body's `file` part into an open file, counting bytes."""

    def __init__(self, out, limit: int, check_folder: Callable[[str], None]):
        self.out = out
        self.limit = limit
        self.check_folder = check_folder
        self.size = 0
        self.folder: str | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._is_file = False
        self._other_bytes = 0

    def callbacks(self) -> dict[str, Callable]:
        return {"on_part_begin": self._part_begin, "on_header_field": self._field, "on_header_value": self._value,
                "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
                "on_part_data": self._data}

    def _part_begin(self) -> None:
        self._headers = {}
        self._is_file = False

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file":
            if self.folder is not None:
                raise ApiError(400, "more than one file in the upload; send one model per request")
            self.folder = folder_for(options.get(b"filename", b"").decode("utf-8", "replace"))
            self.check_folder(self.folder)
            self._is_file = True

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.size += end - start
            if self.size > self.limit:
                raise ApiError(413, f"upload is larger than the {self.limit >> 20} MiB limit")
            self.out.write(data[start:end])
        else:
            self._other_bytes += end - start
            if self._other_bytes > MAX_FORM_OVERHEAD:
                raise ApiError(413, "form fields beside the file are too large")


async def receive_archive(content_type: str, content_length: str | None, body: AsyncIterator[bytes],
                          directory: Path, limits: UploadLimits,
                          check_folder: Callable[[str], None]) -> tuple[str, Path]:
    """Stream the multipart field `file` into a new file under `directory`: (model folder, path).

    The file name is turned into the model folder (`folder_for`) and passed to `check_folder` as
    soon as the part's headers arrive, so a bad name is refused before any of the body is stored.
    ApiError: 400 (not multipart, bad name, malformed), 413 (over `limits.request_bytes`), 408 (over
    `limits.seconds`).
    """
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError(400, "send the model as multipart/form-data with a field named file")
    limit = limits.request_bytes
    if content_length is not None and content_length.isdigit() and int(content_length) > limit + MAX_FORM_OVERHEAD:
        raise ApiError(413, f"upload is larger than the {limit >> 20} MiB limit")
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=directory)
    path = Path(name)
    try:
        with open(fd, "wb") as out:
            part = _FilePart(out, limit, check_folder)
            parser = MultipartParser(boundary, part.callbacks())

            async def receive() -> None:
                async for chunk in body:
                    parser.write(chunk)

            try:
                await asyncio.wait_for(receive(), limits.seconds)
            except asyncio.TimeoutError:
                raise ApiError(408, f"the upload took longer than {limits.seconds:g} s; "
                                    "try again on a better connection") from None
            parser.finalize()
    except ApiError:
        path.unlink(missing_ok=True)
        raise
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise storage_error(exc, "the upload") from None
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ApiError(400, f"malformed multipart body: {brief(str(exc), 120)}") from None
    if part.folder is None:
        path.unlink(missing_ok=True)
        raise ApiError(400, "no field named file in the upload")
    return part.folder, path


def _check_members(members: list[Member]) -> None:
    """Limits that apply before extraction: JSON files are small; there is something to install."""
    for member in members:
        if member.name.rsplit("/", 1)[-1] in (METADATA_FILE, RACER_FILE) and member.size > MAX_JSON_BYTES:
            raise ApiError(422, f"{shown(member.name)} is {member.size} bytes; the limit is {MAX_JSON_BYTES}")
    if not any(not m.is_dir for m in members):
        raise ApiError(422, "archive holds no files")


def _check_gzip(archive: Path, limit: int) -> None:
    """Read the whole gzip stream so its CRC and length are checked: tar stops at its end marker,
    which would let a damaged trailer (a corrupted transfer) through unnoticed."""
    total = 0
    try:
        with gzip.open(archive, "rb") as stream:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise ApiError(422, "archive unpacks to more than the size limit")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ApiError(422, f"archive is corrupt ({exc})") from None


def install_archive(archive: Path, folder: str, store: ModelStore, work: Path, limits: UploadLimits,
                    progress: Callable[[str, int], None]) -> None:
    """Check, unpack, load, compile and test-run the bundle, then install it as `folder`."""
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=work))
    try:
        progress("checking archive", 10)
        _check_members(scan(archive, limits.members, limits.unpacked_bytes))
        _check_gzip(archive, limits.unpacked_bytes + limits.members * TAR_HEADER_BYTES)
        progress("unpacking", 25)
        extract(archive, staging, limits.members, limits.unpacked_bytes)
        with load_bundle(staging, validate=False) as bundle:  # files and metadata: no OpenVINO here
            if bundle.unrunnable:
                raise ApiError(422, bundle.unrunnable)
        progress("converting", 40)
        root = store.check(staging)
        progress("installing", 90)
        store.install(root, folder)
    except (ArchiveError, BundleError) as exc:
        raise ApiError(422, str(exc)) from None
    except OSError as exc:
        raise storage_error(exc, "the model") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
