"""Checking an untrusted bundle in a child process: pre-check, conversion, compilation, one blank frame.

OpenVINO converts and compiles inside whatever process calls it, holding that process's GIL and
memory: a hostile `model.pb` froze the car process for 30 s (console, emergency stop, teleop
deadman, camera, policy) or got it OOM-killed. So every step that lets OpenVINO near a model the
car has not run before happens here, in `python -m car.policy.sandbox`, which limits itself before
importing OpenVINO: address space (RLIMIT_AS, so an allocation past it fails in the child rather
than the kernel's OOM killer picking the car), CPU priority (nice), the size of any file it writes
(RLIMIT_FSIZE) and no core files; it dies with the process that started it. The parent
waits without holding its GIL and kills the child's process group at the wall-clock limit.

What the child writes: converted IR into `ir_cache`, compiled blobs into `compiled_cache` (callers
pass staging folders and keep them only on success, so a refused model leaves no cache behind),
and one JSON result file. Its stdout and stderr go to a file of which only a bounded tail is read.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAX_REASON_CHARS = 300
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_TAIL_BYTES = 4096


@dataclass(frozen=True)
class SandboxLimits:
    """Address space of the child in bytes (a real 23 MB AWS model converts within 1 GiB; a
    DeepRacer has 4 GiB for everything), its wall-clock seconds, its nice increment and the
    largest file it may write (converted IR, compiled blobs)."""

    memory_bytes: int = 1536 << 20
    seconds: float = 120.0
    nice: int = 15
    file_bytes: int = 256 << 20


@dataclass(frozen=True)
class SandboxResult:
    """`reason` is None when the bundle converted, compiled and gave a finite output on a blank
    frame; `root` is the bundle's content folder (a single top-level folder is stepped into)."""

    reason: str | None
    root: Path


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS - 3] + "..."


def check_bundle(root: Path, ir_cache: Path, compiled_cache: Path,
                 limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run the checks on the unpacked bundle at `root` in a limited child; never raises for the model's sake."""
    with tempfile.TemporaryDirectory(prefix="sandbox-") as work:
        result_file, output = Path(work) / "result.json", Path(work) / "output.txt"
        request = {"root": str(root), "ir_cache": str(ir_cache), "compiled_cache": str(compiled_cache),
                   "memory_bytes": limits.memory_bytes, "nice": limits.nice, "file_bytes": limits.file_bytes,
                   "result": str(result_file), "parent": os.getpid()}
        # a few malloc arenas: glibc reserves 64 MiB of address space per arena, which RLIMIT_AS counts
        env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
        with open(output, "wb") as out:
            child = subprocess.Popen([sys.executable, "-m", "car.policy.sandbox", json.dumps(request)],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                     start_new_session=True)
            try:
                code: int | None = child.wait(limits.seconds)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                if child.poll() is None:  # past the limit, or this thread was interrupted
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
        if code is None:
            return SandboxResult(f"checking the model took longer than the car's {limits.seconds:g} s limit", root)
        try:
            answer = json.loads(result_file.read_text()[:64 << 10]) if code == 0 else None
        except (OSError, ValueError):
            answer = None
        if answer is None:
            return SandboxResult(_failure(code, limits, output), root)
        reason = answer.get("reason")
        return SandboxResult(_cut(str(reason)) if reason is not None else None, root / answer.get("root", "."))


def _failure(code: int, limits: SandboxLimits, output: Path) -> str:
    with open(output, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - _TAIL_BYTES))
        tail = fh.read().decode("utf-8", "replace")
    if "bad_alloc" in tail or "MemoryError" in tail or "Cannot allocate memory" in tail:
        return _memory_reason(limits.memory_bytes)
    ended = f"signal {-code}" if code < 0 else f"exit status {code}"
    return f"checking the model crashed ({ended})"


def _die_with_parent(parent: int) -> None:
    """SIGKILL this child when the car's process that started it dies (kill -9, OOM): else it would
    go on writing into the cache the restarted console reads (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the prctl
        os._exit(1)


def _limit_self(request: dict) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (request["memory_bytes"], request["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (request["file_bytes"], request["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(request["nice"])


def _memory_reason(memory_bytes: int) -> str:
    return f"the model needs more than the car's {memory_bytes >> 20} MiB to convert and run"


def _check(request: dict) -> dict:
    """In the child, after _limit_self: the checks, as {"reason": str | None, "root": relative path}."""
    from car.policy.bundle import BundleError, content_root, error_line, find_model, load_bundle
    from car.policy.inference import check_runnable
    from car.policy.precheck import PrecheckError, check_model_file

    root = Path(request["root"])
    try:
        content = content_root(root)
        files = find_model(content)
        for path in (files.path, files.onnx, files.shipped_ir):
            if path is not None:
                check_model_file(path)
        with load_bundle(content, request["ir_cache"]) as bundle:
            reason = bundle.unrunnable or check_runnable(bundle, request["compiled_cache"])
        relative = content.relative_to(root).as_posix()
    except (BundleError, PrecheckError) as exc:
        reason, relative = str(exc), "."
    except MemoryError:
        reason, relative = _memory_reason(request["memory_bytes"]), "."
    except Exception as exc:  # any other failure on this model is a reason not to install it
        reason, relative = f"cannot check the model: {error_line(exc)}", "."
    if reason is not None and "bad_alloc" in reason:  # how OpenVINO reports an allocation past RLIMIT_AS
        reason = _memory_reason(request["memory_bytes"])
    elif reason is not None and ("iostream error" in reason or "File too large" in reason):
        # a write past RLIMIT_FSIZE fails with EFBIG (Python ignores SIGXFSZ); so would a full disk
        reason = (f"the model's converted files would be larger than the car's {request['file_bytes'] >> 20} MiB "
                  "(or the disk is full)")
    return {"reason": reason, "root": relative}


def main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    _die_with_parent(request["parent"])
    _limit_self(request)
    answer = _check(request)
    Path(request["result"]).write_text(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
