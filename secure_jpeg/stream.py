"""Camera streams: encrypt frames from a camera, a video file or a folder of images, and decrypt them back.

Each frame gets a fresh nonce and is written atomically as OUT/frame_NNNNNN.jpg (sequence numbers continue
after any frames already in OUT), so a Ctrl-C or a crash leaves only whole frames. Live frames per second
and per-frame latency go to stderr. OpenCV (the `camera` extra) is needed only for cameras and video files.
"""
from __future__ import annotations

import os
import re
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Iterator

import numpy as np

from rdec.runtime.errors import InputError, RdecError
from rdec.runtime.fileio import atomic_write, encode_png, load_image, read_bytes

from . import ecea

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
FRAME_NAME = "frame_{:06d}"
_FRAME_RE = re.compile(r"^frame_(\d+)\.jpg$")


class Progress:
    """A one-line live status on stderr: frames, frames per second, latency (last and median)."""

    def __init__(self, what: str, stream=sys.stderr, every: float = 0.5):
        self.what, self.stream, self.every = what, stream, every
        self.count, self.failed = 0, 0
        self.start = time.perf_counter()
        self.latencies: deque[float] = deque(maxlen=200)
        self._shown = 0.0

    def tick(self, latency: float) -> None:
        self.count += 1
        self.latencies.append(latency)
        now = time.perf_counter()
        if now - self._shown >= self.every:
            self._shown = now
            self.stream.write("\r" + self.line() + " ")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        med = statistics.median(self.latencies) * 1e3 if self.latencies else 0.0
        last = self.latencies[-1] * 1e3 if self.latencies else 0.0
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"{self.what}: {self.count} frames{failed}, {self.count / elapsed:.1f} fps, "
                f"latency {last:.1f} ms (median {med:.1f} ms)")

    def close(self, note: str = "") -> None:
        self.stream.write("\r" + self.line() + (f" - {note}" if note else "") + "\n")
        self.stream.flush()


def _cv2():
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


def open_source(source: str) -> Iterator[np.ndarray]:
    """Frames (uint8 RGB or grayscale) from a folder of images, a video file, or a camera (index or /dev/video*)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {source}")
        return (load_image(p) for p in files)
    camera = source.isdigit() or source.startswith("/dev/video")
    if not camera and not path.is_file():
        raise InputError(f"source is not a folder, a video file or a camera: {source}")
    cv2 = _cv2()
    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        raise InputError(f"cannot open {'camera' if camera else 'video file'} {source}")
    return _capture_frames(cap, cv2)


def next_sequence(out: Path) -> int:
    """One past the highest frame number already in `out`, so nothing there is overwritten."""
    numbers = [int(m.group(1)) for p in out.iterdir() if (m := _FRAME_RE.match(p.name))]
    return max(numbers) + 1 if numbers else 0


def encrypt_stream(source: str, out: str | os.PathLike, key: bytes, block: int = ecea.DEFAULT_BLOCK,
                   quality: int = ecea.DEFAULT_QUALITY, subsampling: str = ecea.DEFAULT_SUBSAMPLING,
                   max_frames: int = 0, fps_limit: float = 0.0, progress_stream=sys.stderr) -> int:
    """Encrypt frames until the source ends, `max_frames` are done, or Ctrl-C; returns frames written."""
    if max_frames < 0 or fps_limit < 0:
        raise InputError("--max-frames and --fps must not be negative")
    # Validate the parameters before opening a camera or creating folders.
    ecea.jpeg_encode(np.zeros((8, 8), np.uint8), quality, subsampling)
    frames = open_source(str(source))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seq = next_sequence(out)
    progress = Progress("encrypting", progress_stream)
    note = "source ended"
    try:
        for image in frames:
            t0 = time.perf_counter()
            data = ecea.encrypt(image, key, block=block, quality=quality, subsampling=subsampling)
            atomic_write(out / (FRAME_NAME.format(seq) + ".jpg"), data)
            seq += 1
            progress.tick(time.perf_counter() - t0)
            if max_frames and progress.count >= max_frames:
                note = f"stopped after {max_frames} frames"
                break
            if fps_limit:
                time.sleep(max(0.0, progress.start + progress.count / fps_limit - time.perf_counter()))
    except KeyboardInterrupt:
        note = "stopped by Ctrl-C; every finished frame is on disk"
    finally:
        progress.close(note)
    return progress.count


def decrypt_folder(src: str | os.PathLike, out: str | os.PathLike, key: bytes, progress_stream=sys.stderr) -> int:
    """Decrypt every frame_*.jpg in `src` into `out`/frame_*.png; a bad frame is reported, the rest go on.

    Raises RdecError at the end if any frame failed; returns the number decrypted.
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise InputError(f"not a folder: {src}")
    files = sorted(p for p in src.iterdir() if _FRAME_RE.match(p.name))
    if not files:
        raise InputError(f"no encrypted frames (frame_NNNNNN.jpg) in {src}")
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress("decrypting", progress_stream)
    errors = []
    note = "done"
    try:
        for p in files:
            t0 = time.perf_counter()
            try:
                image = ecea.decrypt(read_bytes(p), key)
            except RdecError as e:
                progress.failed += 1
                errors.append(f"{p.name}: {e}")
                continue
            atomic_write(out / (p.stem + ".png"), encode_png(image))
            progress.tick(time.perf_counter() - t0)
    except KeyboardInterrupt:
        note = "stopped by Ctrl-C; every finished frame is on disk"
    finally:
        progress.close(note)
    if errors:
        raise RdecError(f"{len(errors)} of {len(files)} frames failed: " + "; ".join(errors[:5])
                        + (" ..." if len(errors) > 5 else ""))
    return progress.count
