"""Safe `.tar.gz` reading and reproducible writing for model bundles.

A model archive comes from the network (console upload), so every member is checked before
anything is written: only regular files and directories, relative names without `..`, no links or
devices, no duplicates, bounded member count and unpacked size. The archive is bounded by what it
is, not by what it claims: every header counts toward the member cap (operating-system litter
too), a long-name or pax header is read only when it is small and only a few come in a row,
names are capped per component, in total and in depth, and directories are made one level at a
time. The decompressed stream is capped while scanning too, so a gzip bomb costs bounded CPU and
no disk. A name in a reason is cut (`shown`), never echoed whole. Stdlib only: the fixture tool
runs it from a TensorFlow venv.
"""
from __future__ import annotations

import errno
import gzip
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

MAX_MEMBERS = 1000
# the largest real DeepRacer model is ~23 MB, with the IR a stock car converted it to ~47 MB
MAX_UNPACKED_BYTES = 64 << 20
MAX_NAME_BYTES = 1024
MAX_COMPONENT_BYTES = 255
MAX_DEPTH = 16
# a full disk or quota; EFBIG: a file past the process's RLIMIT_FSIZE (the sandbox's, or a test's full disk)
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
MAX_EXTENDED_HEADER_BYTES = 8192
MAX_EXTENDED_HEADERS_IN_A_ROW = 4
_BYTES_PER_HEADER = 4096 + MAX_EXTENDED_HEADERS_IN_A_ROW * MAX_EXTENDED_HEADER_BYTES
_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
             tarfile.SOLARIS_XHDTYPE)


class ArchiveError(ValueError):
    """The archive is unsafe or unreadable; the message is the one-line reason."""


@dataclass(frozen=True)
class Member:
    name: str
    is_dir: bool
    size: int


class _CappedReader(io.RawIOBase):
    """A decompressed stream that fails once more than `limit` bytes have come out of it."""

    def __init__(self, raw: IO[bytes], limit: int):
        self._raw = raw
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        data = self._raw.read(len(buffer))
        self._left -= len(data)
        if self._left < 0:
            raise ArchiveError("archive unpacks to more than the size limit")
        buffer[: len(data)] = data
        return len(data)


def shown(name: str, limit: int = 60) -> str:
    """A member name for a reason: repr(), cut to `limit` characters."""
    text = repr(name)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(name)} characters)"


def _bounded_headers(max_headers: int) -> type[tarfile.TarInfo]:
    """A TarInfo class that counts every header it reads and refuses, before reading it, an
    extended (GNU long name, pax) header that is large or one of a long run (tarfile follows a
    run by recursion, and would hold a 64 MiB long name in memory)."""
    counts = {"headers": 0, "in_a_row": 0}

    class BoundedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
            counts["headers"] += 1
            if counts["headers"] > max_headers:
                raise ArchiveError(f"archive has more than {max_headers} members")
            if self.type in _EXTENDED:
                counts["in_a_row"] += 1
                if self.size > MAX_EXTENDED_HEADER_BYTES:
                    raise ArchiveError(f"archive has a {self.size}-byte long-name or pax header; "
                                       f"the limit is {MAX_EXTENDED_HEADER_BYTES}")
                if counts["in_a_row"] > MAX_EXTENDED_HEADERS_IN_A_ROW:
                    raise ArchiveError(f"archive has more than {MAX_EXTENDED_HEADERS_IN_A_ROW} long-name or "
                                       "pax headers for one member")
            else:
                counts["in_a_row"] = 0
            return super()._proc_member(tar)

    return BoundedTarInfo


@contextmanager
def _reading(path: Path, max_members: int, max_bytes: int) -> Iterator[tarfile.TarFile]:
    """Stream the archive's members, turning every decoding failure into one ArchiveError."""
    cap = max_bytes + max_members * _BYTES_PER_HEADER
    headers = max_members * (1 + MAX_EXTENDED_HEADERS_IN_A_ROW)
    try:
        with gzip.open(path, "rb") as raw, tarfile.open(fileobj=_CappedReader(raw, cap), mode="r|",
                                                        tarinfo=_bounded_headers(headers)) as tar:
            yield tar
    except gzip.BadGzipFile as exc:
        bad_header = str(exc).startswith("Not a gzipped file")
        raise ArchiveError("not a .tar.gz archive (no gzip header)" if bad_header
                           else "archive is corrupt (gzip check failed)") from None
    except EOFError:
        raise ArchiveError("archive is truncated") from None
    except zlib.error:
        raise ArchiveError("archive is corrupt (bad gzip data)") from None
    except tarfile.ReadError as exc:
        reason = ("archive is truncated" if "unexpected end" in str(exc)
                  else "not a .tar.gz archive (no tar inside the gzip)")
        raise ArchiveError(reason) from None


def _kind(info: tarfile.TarInfo) -> str:
    if info.issym():
        return "a symbolic link"
    if info.islnk():
        return "a hard link"
    if info.ischr() or info.isblk():
        return "a device"
    if info.isfifo():
        return "a FIFO"
    return "not a regular file"


def _checked_name(info: tarfile.TarInfo) -> str:
    name = info.name.replace("\\", "/")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise ArchiveError(f"archive member {shown(name)} has a name over {MAX_NAME_BYTES} bytes")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"archive member {shown(info.name)} has an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts:
        raise ArchiveError(f"archive member {shown(info.name)} points outside the archive (..)")
    if len(parts) > MAX_DEPTH:
        raise ArchiveError(f"archive member {shown(name)} is nested {len(parts)} deep; the limit is {MAX_DEPTH}")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES for p in parts):
        raise ArchiveError(f"archive member {shown(name)} has a path part over {MAX_COMPONENT_BYTES} bytes")
    return "/".join(parts)


# What Finder, Windows Explorer, WSL and zip tools add beside the files: AppleDouble `._name`
# resource forks, `__MACOSX/` folders, Finder's `.DS_Store`, Explorer's `Thumbs.db` and
# `desktop.ini`, and the `name:Zone.Identifier` download marks WSL copies out of Windows.
_LITTER_FILES = {".ds_store", "thumbs.db", "desktop.ini"}


def is_os_litter(name: str) -> bool:
    """True when a relative '/'-separated path is, or lies inside, an operating system's metadata."""
    parts = [p for p in name.split("/") if p]
    return any(p.startswith("._") or p == "__MACOSX" or p.lower() in _LITTER_FILES or p.endswith(":Zone.Identifier")
               for p in parts)


def scan(path: str | Path, max_members: int = MAX_MEMBERS, max_bytes: int = MAX_UNPACKED_BYTES) -> list[Member]:
    """Check every member of the archive without writing anything; the checked member list.

    Operating-system litter (is_os_litter) is checked and counted like any member but left out of
    the list.
    """
    members: list[Member] = []
    seen: set[str] = set()
    total = count = 0
    with _reading(Path(path), max_members, max_bytes) as tar:
        for info in tar:
            count += 1
            if count > max_members:
                raise ArchiveError(f"archive has more than {max_members} members")
            if not (info.isreg() or info.isdir()):
                raise ArchiveError(f"archive member {shown(info.name)} is {_kind(info)}")
            name = _checked_name(info)
            total += info.size if info.isreg() else 0
            if total > max_bytes:
                raise ArchiveError(f"archive unpacks to more than {max_bytes} bytes")
            if not name or is_os_litter(name):
                continue
            if name in seen:
                raise ArchiveError(f"archive holds {shown(name)} twice")
            seen.add(name)
            members.append(Member(name, info.isdir(), info.size if info.isreg() else 0))
    return members


def _make_dirs(dest: Path, parts: list[str]) -> None:
    """mkdir -p of dest/parts, one level at a time (pathlib's parents=True recurses)."""
    path = dest
    for part in parts:
        path = path / part
        if not path.is_dir():
            path.mkdir()


def extract(path: str | Path, dest: str | Path, max_members: int = MAX_MEMBERS,
            max_bytes: int = MAX_UNPACKED_BYTES) -> list[Member]:
    """Scan, then write the checked members under `dest` (a fresh directory of the caller's);
    operating-system litter is not written."""
    members = scan(path, max_members, max_bytes)
    checked = {m.name: m for m in members}
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _reading(Path(path), max_members, max_bytes) as tar:
        for info in tar:
            name = _checked_name(info)
            if not name or is_os_litter(name):
                continue
            member = checked.get(name)
            if member is None or member.is_dir != info.isdir() or (info.isreg() and member.size != info.size):
                raise ArchiveError("archive changed while it was being read")
            parts = name.split("/")
            try:
                if member.is_dir:
                    _make_dirs(dest, parts)
                    continue
                _make_dirs(dest, parts[:-1])
                with tar.extractfile(info) as src, open(dest.joinpath(*parts), "xb") as out:
                    shutil.copyfileobj(src, out)
            except OSError as exc:
                if exc.errno in DISK_FULL:
                    raise  # the car's fault, not the archive's
                raise ArchiveError(f"cannot unpack {shown(name)}: {exc.strerror}") from None
    return members


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    return info


def write_tar_gz(out: str | Path, files: Mapping[str, bytes | Path]) -> Path:
    """Write `files` (archive name -> bytes or a file to copy) as a reproducible .tar.gz.

    Sorted names, zero timestamps and owners: the same bundle always gives the same bytes.
    Written next to `out` and renamed, so a reader never sees half an archive.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name in sorted(files):
                content = files[name]
                if isinstance(content, Path):
                    with open(content, "rb") as src:
                        tar.addfile(_tar_info(name, content.stat().st_size), src)
                else:
                    tar.addfile(_tar_info(name, len(content)), io.BytesIO(content))
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return out
