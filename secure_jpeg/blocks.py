"""Stage 1 of ECEA: keyed pixel-block encryption before JPEG compression.

The image is padded (edge replication) to a multiple of max(B, 16) so blocks and JPEG MCUs align, cut
into BxB blocks, and each output block is a keyed source block after a keyed rotation/flip (one of 8),
an optional negative-positive transform (p -> 255 - p), and a keyed shuffle of whole pixels' colour
channels (one of 6 orders; all three channels move together, which keeps JPEG efficiency). Encryption
and decryption are the same kernels compiled for two directions, so they cannot drift apart.
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


def block_key(stream: KeyStream, n_blocks: int, color: bool) -> BlockKey:
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


def _tiles_kernel(to_tiles: bool):
    """Compile the copy between a true-size image (h x w, flat) and block-major tiles of the padded grid.

    To tiles: read with edge clamping (that is the padding); from tiles: write only inside h x w (the crop).
    Both walk the image row by row, so memory is streamed rather than hopped block to block. The direction
    is a compile-time constant, so the source array may be read-only (e.g. a decoded image).
    """

    @numba.njit(cache=True)
    def kernel(img, tiles, h, w, bs, bx, nch):
        u = np.uint64  # unsigned indices: no wraparound test per access
        row = bs * nch
        tile = bs * row
        for ty in range(tiles.size // (tile * bx)):
            for y in range(bs):
                iy = ty * bs + y
                if iy >= h and not to_tiles:
                    break
                sy = min(iy, h - 1)
                for tx in range(bx):
                    tp = u((ty * bx + tx) * tile + y * row)
                    ip = u((sy * w + tx * bs) * nch)
                    full = tx * bs + bs <= w
                    if to_tiles:
                        if full:
                            for i in range(u(row)):
                                tiles[tp + i] = img[ip + i]
                        else:
                            for x in range(bs):
                                q = u((sy * w + min(tx * bs + x, w - 1)) * nch)
                                for c in range(u(nch)):
                                    tiles[tp + u(x * nch) + c] = img[q + c]
                    else:
                        if full:
                            for i in range(u(row)):
                                img[ip + i] = tiles[tp + i]
                        else:
                            for i in range(u((w - tx * bs) * nch)):
                                img[ip + i] = tiles[tp + i]

    return kernel


def _transform_kernel(inverse: bool):
    """Compile the keyed block transform: forward grid block k = T_k(tile perm[k]); inverse tile perm[k] =
    T_k^-1(grid block k). T_k is the block's dihedral map, channel order and XOR 255 if negated. Tiles are
    contiguous, so the keyed (random) block order costs one short contiguous read or write per block.
    """

    @numba.njit(cache=True)
    def kernel(grid, tiles, wp, bs, perm, dihedral, negate, channels, nch):
        # Unsigned indices: numba then skips its negative-index wraparound test on every access (3x faster).
        # Negative steps (mirrored blocks) wrap modulo 2**64, which is exact.
        u = np.uint64
        bx = wp // bs
        last = bs - 1
        tile = bs * bs * nch
        for k in range(perm.size):
            ky, kx = (k // bx) * bs, (k % bx) * bs
            base = perm[k] * tile
            a0, ay, ax, b0, by, bxx = _dihedral(dihedral[k], last)
            m = np.uint8(255) if negate[k] else np.uint8(0)
            c0 = u(channels[k, 0])
            c1 = u(channels[k, 1] if nch == 3 else 0)
            c2 = u(channels[k, 2] if nch == 3 else 0)
            step = u((ax * bs + bxx) * nch)
            for y in range(bs):
                gp = u(((ky + y) * wp + kx) * nch)
                tp = u(base + ((a0 + ay * y) * bs + b0 + by * y) * nch)
                if inverse:
                    if nch == 3:
                        for x in range(bs):
                            tiles[tp + c0] = grid[gp] ^ m
                            tiles[tp + c1] = grid[gp + u(1)] ^ m
                            tiles[tp + c2] = grid[gp + u(2)] ^ m
                            gp += u(3)
                            tp += step
                    else:
                        for x in range(bs):
                            tiles[tp] = grid[gp] ^ m
                            gp += u(1)
                            tp += step
                else:
                    if nch == 3:
                        for x in range(bs):
                            grid[gp] = tiles[tp + c0] ^ m
                            grid[gp + u(1)] = tiles[tp + c1] ^ m
                            grid[gp + u(2)] = tiles[tp + c2] ^ m
                            gp += u(3)
                            tp += step
                    else:
                        for x in range(bs):
                            grid[gp] = tiles[tp] ^ m
                            gp += u(1)
                            tp += step

    return kernel


_to_tiles, _from_tiles = _tiles_kernel(True), _tiles_kernel(False)
_scramble, _unscramble = _transform_kernel(False), _transform_kernel(True)


def _run(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int, inverse: bool) -> np.ndarray:
    """Forward: true-size image -> padded scrambled grid; inverse: padded grid -> true-size image."""
    if block not in BLOCK_SIZES:
        raise InputError(f"block size must be one of {BLOCK_SIZES}, got {block}")
    gray = image.ndim == 2
    nch = 1 if gray else 3
    hp, wp = padded_size(height, width, block)
    n = (hp // block) * (wp // block)
    key = block_key(stream, n, color=not gray)
    src = np.ascontiguousarray(image).reshape(-1)
    tiles = np.empty(n * block * block * nch, dtype=np.uint8)
    out = np.empty(((height, width) if inverse else (hp, wp)) + (() if gray else (nch,)), dtype=np.uint8)
    if inverse:
        _unscramble(src, tiles, wp, block, key.perm, key.dihedral, key.negate, key.channels, nch)
        _from_tiles(out.reshape(-1), tiles, height, width, block, wp // block, nch)
    else:
        _to_tiles(src, tiles, height, width, block, wp // block, nch)
        _scramble(out.reshape(-1), tiles, wp, block, key.perm, key.dihedral, key.negate, key.channels, nch)
    return out


def encrypt_blocks(image: np.ndarray, stream: KeyStream, block: int) -> np.ndarray:
    """Scramble into an image padded (edge replication) to a multiple of max(block, 16); the caller
    records the true size."""
    image = check_image(image)
    return _run(image, stream, block, image.shape[0], image.shape[1], inverse=False)


def decrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int) -> np.ndarray:
    """Undo `encrypt_blocks` on a (decoded) padded image, giving the true-size image."""
    image = check_image(image)
    if image.shape[:2] != padded_size(height, width, block):
        raise InputError("encrypted image size does not match its recorded size")
    return _run(image, stream, block, height, width, inverse=True)
