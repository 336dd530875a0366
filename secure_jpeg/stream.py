"""Camera streams: encrypt frames from a camera, a video file or a folder of images, and decrypt them back.

Each frame gets a fresh nonce and is written atomically as OUT/frame_NNNNNN.jpg (sequence numbers continue
after any frames already in OUT), so a Ctrl-C or a crash leaves only whole frames. Live frames per second
and per-frame latency go to stderr. OpenCV (the `camera` extra) is needed only for cameras and video files.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Iterator

import numpy as np

from rdec.runtime.errors import InputError, RdecError, WrongKeyError
from rdec.runtime.fileio import atomic_write, encode_png, load_image, make_folder, read_bytes
from rdec.runtime.interrupts import StopSignals, is_interrupt

from . import ecea

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
FRAME_NAME = "frame_{:06d}"
_FRAME_RE = re.compile(r"^frame_(\d+)\.jpg$")


class Progress:
    """A live status on stderr: frames, frames per second, latency (last and median). On a terminal one line
    rewritten in place; into a log (systemd, docker, a file) a new line every `log_every` seconds."""

    def __init__(self, what: str, stream=sys.stderr, every: float = 0.5, log_every: float = 10.0):
        self.what, self.stream = what, stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = every if self.tty else log_every
        self.count, self.failed = 0, 0
        self.start = time.perf_counter()
        self.latencies: deque[float] = deque(maxlen=200)
        self._shown = -float("inf")  # the first frame is shown at once

    def tick(self, latency: float) -> None:
        self.count += 1
        self.latencies.append(latency)
        now = time.perf_counter()
        if now - self._shown >= self.every:
            self._shown = now
            self.stream.write(("\r" + self.line() + " ") if self.tty else (self.line() + "\n"))
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        med = statistics.median(self.latencies) * 1e3 if self.latencies else 0.0
        last = self.latencies[-1] * 1e3 if self.latencies else 0.0
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{self.what}: {self.count} frame{'' if self.count == 1 else 's'}{failed}, "
                f"{self.count / elapsed:.1f} fps, latency {last:.1f} ms (median {med:.1f} ms)")

    def close(self, note: str = "") -> None:
        self.stream.write(("\r" if self.tty else "") + self.line() + (f" - {note}" if note else "") + "\n")
        self.stream.flush()


def _cv2():
    # OpenCV's and FFmpeg's own warnings would break the one-line error rule: errors only (FFmpeg quiet);
    # what matters (cannot open, no frame) rdec reports itself
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        import cv2
    except ImportError:
        raise InputError("cameras and video files need OpenCV: pip install 'rdec[camera]'") from None
    return cv2


def _capture_frames(cap, cv2) -> Iterator[np.ndarray]:
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield bgr[:, :, ::-1] if bgr.ndim == 3 else bgr
    finally:
        cap.release()


def _folder_frames(files: list[Path]) -> Iterator[np.ndarray | RdecError]:
    for p in files:
        try:
            yield load_image(p)
        except RdecError as e:  # reported by the caller; the other images go on
            yield e


def open_source(source: str) -> Iterator[np.ndarray | RdecError]:
    """Frames (uint8 RGB or grayscale) from a folder of images, a video file, or a camera (index or /dev/video*).
    From a folder, an image that cannot be read comes as its error instead of a frame."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {source}")
        return _folder_frames(files)
    camera = source.isdigit() or source.startswith("/dev/video")
    if not camera and not path.is_file():
        raise InputError(f"source is not a folder, a video file or a camera: {source}")
    cv2 = _cv2()
    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        raise InputError(f"cannot open {'camera' if camera else 'video file'} {source}")
    return _capture_frames(cap, cv2)


def next_sequence(out: Path) -> int:
    """One past the highest frame number already in `out`, where numbering continues (frames are claimed
    with exclusive writes, so another stream writing into the same folder only makes them skip numbers)."""
    if not out.is_dir():
        return 0
    numbers = [int(m.group(1)) for p in out.iterdir() if (m := _FRAME_RE.match(p.name))]
    return max(numbers) + 1 if numbers else 0


def _write_frame(path: Path, data: bytes, exclusive: bool = False) -> None:
    """Atomically; the folder is made with the first frame, so a run that fails before leaves none (nor one
    that it made for a first frame it could not write)."""
    made = not path.parent.is_dir()
    if made:
        make_folder(path.parent)
    try:
        atomic_write(path, data, exclusive=exclusive)
    except InputError:
        if made:
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        raise


def _run_frames(progress: Progress, items, convert, write, end_note: str, max_frames: int = 0,
                fps_limit: float = 0.0, stop: StopSignals | None = None) -> None:
    """`write(item, convert(item))` for each item, with the live status, until the items end or `max_frames`
    are written. A frame that cannot be converted (an item that is an error, or RdecError from `convert`) is
    reported and skipped, except a wrong key on the first frame, which stops the run (every frame would fail
    alike); a write error stops the run. Ctrl-C or SIGTERM stops at once (the frame in hand is dropped: writes
    are atomic, so every finished frame is whole on disk) and is raised again once the status is closed, so the
    command still exits as interrupted. Raises RdecError at the end if any frame failed."""
    errors, note, interrupted = [], end_note, False
    try:
        for item in items:
            if stop is not None and stop.requested:
                raise KeyboardInterrupt
            t0 = time.perf_counter()
            try:
                if isinstance(item, RdecError):
                    raise item
                data = convert(item)
            except RdecError as e:
                if isinstance(e, WrongKeyError) and progress.count == 0 and not errors:
                    raise WrongKeyError(f"{e} (stopped at the first frame)") from None
                progress.failed += 1
                errors.append(str(e))
                continue
            write(item, data)
            progress.tick(time.perf_counter() - t0)
            if max_frames and progress.count >= max_frames:
                note = f"stopped after {max_frames} frame{'' if max_frames == 1 else 's'}"
                break
            if fps_limit:
                time.sleep(max(0.0, progress.start + progress.count / fps_limit - time.perf_counter()))
        if stop is not None and stop.requested:
            raise KeyboardInterrupt
    except BaseException as e:
        if not is_interrupt(e, stop):
            note = "stopped by an error"
            raise
        note, interrupted = "stopped by Ctrl-C or SIGTERM; every finished frame is on disk", True
    finally:
        if errors and note != end_note:  # stopped early: the skipped frames are not reported below
            note += f"; skipped {len(errors)}: " + "; ".join(errors[:3]) + (" ..." if len(errors) > 3 else "")
        progress.close(note)
    if interrupted:
        raise KeyboardInterrupt
    if errors:
        raise RdecError(f"{len(errors)} of {progress.count + len(errors)} frames failed: " + "; ".join(errors[:5])
                        + (" ..." if len(errors) > 5 else ""))


def encrypt_stream(source: str, out: str | os.PathLike, key: bytes, block: int = ecea.DEFAULT_BLOCK,
                   quality: int = ecea.DEFAULT_QUALITY, subsampling: str = ecea.DEFAULT_SUBSAMPLING,
                   max_frames: int = 0, fps_limit: float = 0.0, progress_stream=sys.stderr,
                   stop: StopSignals | None = None) -> int:
    """Encrypt frames until the source ends, `max_frames` are done, or Ctrl-C; returns frames written.
    InputError if the source gives no frame at all (an unreadable video file)."""
    if max_frames < 0 or not (math.isfinite(fps_limit) and fps_limit >= 0):
        raise InputError("--max-frames must not be negative and --fps must be a finite number >= 0")
    # Validate the parameters before opening a camera or creating folders.
    ecea.jpeg_encode(np.zeros((8, 8), np.uint8), quality, subsampling)
    frames = open_source(str(source))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    seq = next_sequence(out)

    def write(_image, data: bytes) -> None:
        nonlocal seq
        while True:  # the next free number: another stream may have taken this one
            path = out / (FRAME_NAME.format(seq) + ".jpg")
            seq += 1
            try:
                return _write_frame(path, data, exclusive=True)
            except FileExistsError:
                continue

    progress = Progress("encrypting", progress_stream)
    _run_frames(progress, frames, lambda image: ecea.encrypt(image, key, block=block, quality=quality,
                                                            subsampling=subsampling),
                write, "source ended", max_frames, fps_limit, stop)
    if progress.count == 0 and not progress.failed:
        raise InputError(f"no frame could be read from {source}")
    return progress.count


def decrypt_folder(src: str | os.PathLike, out: str | os.PathLike, key: bytes, progress_stream=sys.stderr,
                   stop: StopSignals | None = None) -> int:
    """Decrypt every frame_*.jpg in `src` into `out`/frame_*.png (zlib level 1: PNG's default level costs
    20 times the decryption); a bad frame is reported, the rest go on, but a wrong key on the first frame
    stops at once. Raises RdecError at the end if any frame failed; returns the number decrypted.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise InputError(f"not a folder: {src}")
    files = sorted(p for p in src.iterdir() if _FRAME_RE.match(p.name))
    if not files:
        raise InputError(f"no encrypted frames (frame_NNNNNN.jpg) in {src}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")

    def convert(p: Path) -> bytes:
        try:
            return encode_png(ecea.decrypt(read_bytes(p), key), compress_level=1)
        except RdecError as e:
            raise type(e)(f"{p.name}: {e}") from None

    progress = Progress("decrypting", progress_stream)
    _run_frames(progress, files, convert, lambda p, data: _write_frame(out / (p.stem + ".png"), data), "done",
                stop=stop)
    return progress.count
