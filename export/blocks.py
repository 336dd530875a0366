"""Split images into 64x64 blocks (padding by reflection to a multiple of 64) and merge them back.

numpy only: the device runtime can use the same layout (row-major block order).
"""
from __future__ import annotations

import numpy as np

BLOCK = 64


def pad_to_blocks(img: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """HxWxC -> padded H'xW'xC with H', W' multiples of `block` (reflect, or edge for tiny images)."""
    h, w = img.shape[:2]
    ph, pw = (-h) % block, (-w) % block
    if ph == 0 and pw == 0:
        return img
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)


def split_blocks(img: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """HxWxC image -> (N, C, block, block) blocks in row-major order, plus (H, W, rows, cols) to merge back."""
    h, w = img.shape[:2]
    p = pad_to_blocks(img, block)
    rows, cols = p.shape[0] // block, p.shape[1] // block
    b = p.reshape(rows, block, cols, block, p.shape[2]).transpose(0, 2, 4, 1, 3)
    return np.ascontiguousarray(b.reshape(rows * cols, p.shape[2], block, block)), (h, w, rows, cols)


def merge_blocks(blocks: np.ndarray, layout: tuple[int, int, int, int], crop: bool = True) -> np.ndarray:
    """Inverse of split_blocks: (N, C, b, b) -> HxWxC (cropped to the original size unless crop=False)."""
    h, w, rows, cols = layout
    n, c, bh, bw = blocks.shape
    if n != rows * cols:
        raise ValueError(f"expected {rows * cols} blocks, got {n}")
    img = blocks.reshape(rows, cols, c, bh, bw).transpose(0, 3, 1, 4, 2).reshape(rows * bh, cols * bw, c)
    return img[:h, :w] if crop else img
