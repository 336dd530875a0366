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
from rdec.runtime.keys import KeyStream

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
    perm = stream.permutation(n_blocks)
    dihedral = stream.below(np.full(n_blocks, 8))
    negate = stream.below(np.full(n_blocks, 2))
    if color:
        channels = _CHANNEL_ORDERS[stream.below(np.full(n_blocks, 6))]
    else:
        channels = np.zeros((n_blocks, 1), dtype=np.int64)
    return BlockKey(perm, dihedral, negate, channels)


@numba.njit(cache=True, inline="always")
def _dihedral(d, last):
    """Source offset of output pixel (y, x) in its block: (py, px) = (a0 + ay*y + ax*x, b0 + by*y + bx*x)."""
    f0, fs = (last, -1) if d >= 4 else (0, 1)  # mirror first: u = f0 + fs*x
    r = d & 3
    if r == 0:
        return 0, 1, 0, f0, 0, fs
    if r == 1:
        return f0, 0, fs, last, -1, 0
    if r == 2:
        return last, -1, 0, last - f0, 0, -fs
    return last - f0, 0, -fs, 0, 1, 0


@numba.njit(cache=True)
def _apply(img, out, h, w, wp, bs, perm, dihedral, negate, channels, nch, inverse):
    """Stage-1 kernel on flat pixel buffers, both directions in one place.

    Forward: out (padded grid, row width wp) block k = T_k(img block perm[k]), reading the true-size img
    (h x w) with edge clamping, so padding needs no extra pass. Inverse: out (true size) block perm[k] =
    T_k^-1(img block k), writing only inside h x w. T_k: dihedral map, channel order, XOR 255 if negated.
    """
    bx = wp // bs
    last = bs - 1
    rs_small = w * nch  # row stride of the true-size image
    rs_grid = wp * nch  # row stride of the padded image
    for k in range(perm.size):
        ky, kx = (k // bx) * bs, (k % bx) * bs
        s = perm[k]
        sy, sx = (s // bx) * bs, (s % bx) * bs
        a0, ay, ax, b0, by, bxx = _dihedral(dihedral[k], last)
        m = np.uint8(255) if negate[k] else np.uint8(0)
        c0 = channels[k, 0]
        c1 = channels[k, 1] if nch == 3 else 0
        c2 = channels[k, 2] if nch == 3 else 0
        inside = sy + bs <= h and sx + bs <= w
        step = ax * rs_small + bxx * nch
        for y in range(bs):
            py = sy + a0 + ay * y
            px = sx + b0 + by * y
            gp = (ky + y) * rs_grid + kx * nch
            if inside:
                sp = py * rs_small + px * nch
                # branches hoisted out of the pixel loop: four straight loops
                if inverse and nch == 3:
                    for x in range(bs):
                        out[sp + c0] = img[gp] ^ m
                        out[sp + c1] = img[gp + 1] ^ m
                        out[sp + c2] = img[gp + 2] ^ m
                        gp += 3
                        sp += step
                elif inverse:
                    for x in range(bs):
                        out[sp] = img[gp] ^ m
                        gp += 1
                        sp += step
                elif nch == 3:
                    for x in range(bs):
                        out[gp] = img[sp + c0] ^ m
                        out[gp + 1] = img[sp + c1] ^ m
                        out[gp + 2] = img[sp + c2] ^ m
                        gp += 3
                        sp += step
                else:
                    for x in range(bs):
                        out[gp] = img[sp] ^ m
                        gp += 1
                        sp += step
            else:
                for x in range(bs):
                    qy = py + ax * x
                    qx = px + bxx * x
                    if inverse:
                        if qy < h and qx < w:
                            sp = qy * rs_small + qx * nch
                            for c in range(nch):
                                out[sp + channels[k, c]] = img[gp + c] ^ m
                    else:
                        sp = min(qy, h - 1) * rs_small + min(qx, w - 1) * nch
                        for c in range(nch):
                            out[gp + c] = img[sp + channels[k, c]] ^ m
                    gp += nch


def _run(image: np.ndarray, stream: KeyStream, block: int, shape: tuple, inverse: bool) -> np.ndarray:
    """Run the stage-1 kernel from `image` into a new array of `shape` (padded or true size)."""
    if block not in BLOCK_SIZES:
        raise InputError(f"block size must be one of {BLOCK_SIZES}, got {block}")
    gray = image.ndim == 2
    src = np.ascontiguousarray(image[:, :, None] if gray else image)
    out = np.empty(shape + (src.shape[2],), dtype=np.uint8)
    (hp, wp), (h, w) = (src.shape[:2], shape) if inverse else (shape, src.shape[:2])
    key = block_key(stream, (hp // block) * (wp // block), block, color=not gray)
    _apply(src.reshape(-1), out.reshape(-1), h, w, wp, block, key.perm, key.dihedral, key.negate,
           key.channels, src.shape[2], inverse)
    return out[:, :, 0] if gray else out


def encrypt_blocks(image: np.ndarray, stream: KeyStream, block: int) -> np.ndarray:
    """Scramble into an image padded (edge replication) to a multiple of max(block, 16); the caller
    records the true size."""
    image = check_image(image)
    return _run(image, stream, block, padded_size(image.shape[0], image.shape[1], block), inverse=False)


def decrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int) -> np.ndarray:
    """Undo `encrypt_blocks` on a (decoded) padded image, giving the true-size image."""
    image = check_image(image)
    if image.shape[:2] != padded_size(height, width, block):
        raise InputError("encrypted image size does not match its recorded size")
    return _run(image, stream, block, (height, width), inverse=True)
