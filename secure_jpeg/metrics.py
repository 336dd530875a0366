"""Image-encryption metrics as used in the ECEA paper: entropy, adjacent-pixel correlation, NPCR/UACI,
PSNR, bits per pixel, and statistics of the DC same-sign runs that stage 2 permutes."""
from __future__ import annotations

import math

import numpy as np

from . import markers
from .dcperm import same_sign_runs
from .entropy import analyze_scan

DIRECTIONS = ("h", "v", "d")


def channels(image: np.ndarray) -> list[np.ndarray]:
    """The image's channels as 2-D arrays (one for grayscale, R, G, B for colour)."""
    return [image] if image.ndim == 2 else [image[:, :, c] for c in range(image.shape[2])]


def entropy(channel: np.ndarray) -> float:
    """Shannon entropy of the 8-bit histogram, in bits (8.0 for uniformly random pixels)."""
    counts = np.bincount(channel.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: a one-colour channel gives 0.0, not -0.0


def correlation(channel: np.ndarray, direction: str) -> float:
    """Pearson correlation of all horizontally, vertically or diagonally adjacent pixel pairs; NaN where it is
    undefined (no such pairs in a one-pixel-wide image, or a constant channel)."""
    c = channel.astype(np.float64)
    a, b = {"h": (c[:, :-1], c[:, 1:]), "v": (c[:-1, :], c[1:, :]), "d": (c[:-1, :-1], c[1:, 1:])}[direction]
    if a.size == 0:
        return float("nan")
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def npcr_uaci(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Number of pixels change rate and unified average changing intensity (percent) of one channel pair."""
    if x.shape != y.shape:
        raise ValueError("NPCR/UACI need images of the same size")
    d = np.abs(x.astype(np.int16) - y.astype(np.int16))
    return float((d > 0).mean() * 100), float(d.mean() / 255 * 100)


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def bpp(n_bytes: int, height: int, width: int) -> float:
    return 8.0 * n_bytes / (height * width)


def dc_run_stats(jpeg: bytes) -> dict:
    """DC same-sign run statistics of a JPEG: how many units stage 2 can move and the permutations' key space."""
    parsed = markers.parse(jpeg)
    lengths = np.concatenate([same_sign_runs(analyze_scan(parsed, s)).length for s in parsed.scans])
    units = int(lengths.sum())
    movable = lengths[lengths >= 2]
    return {
        "dc_units": units,
        "runs": int(lengths.size),
        "mean_run": float(lengths.mean()),
        "max_run": int(lengths.max()),
        "movable_fraction": float(movable.sum() / units),
        "log2_permutations": float(sum(math.lgamma(int(n) + 1) for n in movable) / math.log(2)),
    }
