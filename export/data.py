"""Training data: any folder of images, held in memory, served as random 64x64 crops in [-1, 1].

Crops are a pure function of (seed, rank, step), so training is deterministic and resumes exactly.
Folders named like the evaluation sets (Kodak, SIPI) are refused: never train on the test images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rdec.runtime.errors import InputError
from rdec.runtime.fileio import load_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}
FORBIDDEN_NAMES = ("kodak", "sipi")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name; typed errors for a missing or empty folder."""
    p = Path(folder)
    if not p.exists():
        raise InputError(f"no such data folder: {folder}")
    if not p.is_dir():
        raise InputError(f"data path is not a folder: {folder}")
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images (png/jpg/bmp/tif/webp) in {folder}")
    return files


def load_rgb(path: Path) -> np.ndarray:
    """uint8 HxWx3 (grayscale images are repeated over the three channels)."""
    a = load_image(path)
    return np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a


class CropSampler:
    """Random `size` x `size` crops (with random horizontal flips) from every image of a folder."""

    def __init__(self, folder: str | Path, size: int = 64, seed: int = 0, rank: int = 0, check_name: bool = True):
        if check_name and any(n in part.lower() for part in Path(folder).resolve().parts[-2:]
                              for n in FORBIDDEN_NAMES):
            raise InputError(f"refusing to train on {folder}: Kodak and SIPI are evaluation sets")
        self.images = [im for im in (load_rgb(f) for f in list_images(folder))
                       if im.shape[0] >= size and im.shape[1] >= size]
        if not self.images:
            raise InputError(f"no image in {folder} is at least {size}x{size} pixels")
        self.size, self.seed, self.rank = size, seed, rank

    def batch(self, step: int, n: int) -> np.ndarray:
        """float32 (n, 3, size, size) in [-1, 1] for training step `step` (deterministic)."""
        rng = np.random.default_rng([self.seed, self.rank, step])
        s = self.size
        out = np.empty((n, 3, s, s), dtype=np.float32)
        for k in range(n):
            im = self.images[rng.integers(len(self.images))]
            y = rng.integers(im.shape[0] - s + 1)
            x = rng.integers(im.shape[1] - s + 1)
            crop = im[y:y + s, x:x + s]
            if rng.integers(2):
                crop = crop[:, ::-1]
            out[k] = crop.transpose(2, 0, 1)
        return out / 127.5 - 1.0
