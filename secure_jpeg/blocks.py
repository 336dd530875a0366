"""Stage 1 of ECEA: keyed pixel-block encryption before JPEG compression.

The image is padded (edge replication) to a multiple of max(B, 16) so blocks and JPEG MCUs align, cut
into BxB blocks, and each output block is a keyed source block after a keyed rotation/flip (one of 8),
an optional negative-positive transform (p -> 255 - p), and a keyed shuffle of whole pixels' colour
channels (one of 6 orders; all three channels move together, which keeps JPEG efficiency). Encryption
and decryption are one kernel run in two directions, so they cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from rdec.runtime.errors import InputError
from rdec.runtime.keys import KeyStream, fisher_yates

BLOCK_SIZES = (8, 16, 32)
MCU = 16
_CHANNEL_ORDERS = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], dtype=np.int64)


@dataclass
class BlockKey:
    """Per-image keyed choices for every block position."""

    perm: np.ndarray  # output block k holds source block perm[k]
    dihedral: np.ndarray  # 0..7: rotation by 90 degrees * (d & 3), then a mirror if d >= 4
    negate: np.ndarray  # 0/1
    channels: np.ndarray  # (n, 3) channel order


def padded_size(height: int, width: int, block: int) -> tuple[int, int]:
    unit = max(block, MCU)
    return -(-height // unit) * unit, -(-width // unit) * unit


def check_image(image: np.ndarray) -> np.ndarray:
    """Accept uint8 HxW or HxWx3 (HxWx1 is treated as grayscale); typed error otherwise."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InputError(f"image must be HxW (grayscale) or HxWx3 (RGB), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError("image is empty")
    if image.shape[0] > 65500 or image.shape[1] > 65500:
        raise InputError("image is larger than JPEG allows (65500 pixels a side)")
    return image


def block_key(stream: KeyStream, n_blocks: int, block: int, color: bool) -> BlockKey:
    """Draw every keyed choice from the keystream, in a fixed order."""
    perm = fisher_yates(np.arange(n_blocks, dtype=np.int64), stream.below(np.arange(n_blocks, 1, -1)))
    dihedral = stream.below(np.full(n_blocks, 8))
    negate = stream.below(np.full(n_blocks, 2))
    if color:
        channels = _CHANNEL_ORDERS[stream.below(np.full(n_blocks, 6))]
    else:
        channels = np.zeros((n_blocks, 1), dtype=np.int64)
    return BlockKey(perm, dihedral, negate, channels)


@numba.njit(cache=True)
def _apply(src, dst, bs, perm, dihedral, negate, channels, inverse):
    """Forward: dst block k = T_k(src block perm[k]); inverse: dst block perm[k] = T_k^-1(src block k)."""
    bx = src.shape[1] // bs
    nch = src.shape[2]
    last = bs - 1
    for k in range(perm.size):
        ky, kx = (k // bx) * bs, (k % bx) * bs
        s = perm[k]
        sy, sx = (s // bx) * bs, (s % bx) * bs
        d = dihedral[k]
        neg = negate[k]
        for y in range(bs):
            for x in range(bs):
                u = last - x if d >= 4 else x
                r = d & 3
                if r == 0:
                    py, px = y, u
                elif r == 1:
                    py, px = u, last - y
                elif r == 2:
                    py, px = last - y, last - u
                else:
                    py, px = last - u, y
                for c in range(nch):
                    cc = channels[k, c]
                    if inverse:
                        v = src[ky + y, kx + x, c]
                        dst[sy + py, sx + px, cc] = 255 - v if neg else v
                    else:
                        v = src[sy + py, sx + px, cc]
                        dst[ky + y, kx + x, c] = 255 - v if neg else v


def _run(image: np.ndarray, stream: KeyStream, block: int, inverse: bool) -> np.ndarray:
    if block not in BLOCK_SIZES:
        raise InputError(f"block size must be one of {BLOCK_SIZES}, got {block}")
    gray = image.ndim == 2
    src = np.ascontiguousarray(image[:, :, None] if gray else image)
    h, w = src.shape[:2]
    n = (h // block) * (w // block)
    key = block_key(stream, n, block, color=not gray)
    dst = np.empty_like(src)
    _apply(src, dst, block, key.perm, key.dihedral, key.negate, key.channels, inverse)
    return dst[:, :, 0] if gray else dst


def encrypt_blocks(image: np.ndarray, stream: KeyStream, block: int) -> np.ndarray:
    """Pad to a multiple of max(block, 16) and scramble; the caller records the true size."""
    image = check_image(image)
    ph, pw = padded_size(image.shape[0], image.shape[1], block)
    pad = ((0, ph - image.shape[0]), (0, pw - image.shape[1])) + ((0, 0),) * (image.ndim - 2)
    if ph != image.shape[0] or pw != image.shape[1]:
        image = np.pad(image, pad, mode="edge")
    return _run(image, stream, block, inverse=False)


def decrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int) -> np.ndarray:
    """Undo `encrypt_blocks` on a (decoded) padded image and crop to the true size."""
    image = check_image(image)
    if image.shape[:2] != padded_size(height, width, block):
        raise InputError("encrypted image size does not match its recorded size")
    return _run(image, stream, block, inverse=True)[:height, :width]
