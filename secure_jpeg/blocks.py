"""Stage 1 of ECEA: keyed pixel-block encryption before JPEG compression.

The image is padded (edge replication) to a multiple of max(B, 16) so blocks and JPEG MCUs align, cut
into BxB blocks, and each output block is a keyed source block after a keyed rotation/flip (one of 8),
an optional negative-positive transform (p -> 255 - p), and a keyed shuffle of whole pixels' colour
channels (one of 6 orders; all three channels move together, which keeps JPEG efficiency). Encryption
and decryption are the same kernels run in the two directions, so they cannot drift apart.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from rdec.runtime.errors import InputError
from rdec.runtime.keys import KeyStream

BLOCK_SIZES = (8, 16, 32)
MCU = 16
# The 6 channel orders (output channel c takes source channel ORDER[c]) and the index of each one's inverse.
_CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
_REVERSED_ORDER = np.array([_CHANNEL_ORDERS.index(o[::-1]) for o in _CHANNEL_ORDERS], dtype=np.int64)
_INVERSE_ORDER = np.array([_CHANNEL_ORDERS.index(tuple(int(np.argsort(o)[c]) for c in range(3)))
                           for o in _CHANNEL_ORDERS], dtype=np.int64)


@dataclass
class BlockKey:
    """Per-image keyed choices for every block position."""

    perm: np.ndarray  # output block k holds source block perm[k]
    dihedral: np.ndarray  # 0..7: rotation by 90 degrees * (d & 3), then a mirror if d >= 4
    negate: np.ndarray  # 0/1
    order: np.ndarray  # index into _CHANNEL_ORDERS (0 for grayscale)


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
    order = stream.below(np.full(n_blocks, 6)) if color else np.zeros(n_blocks, dtype=np.int64)
    return BlockKey(perm, dihedral, negate, order)


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


@numba.njit(cache=True, inline="always")
def _recolor_tile(tiles, a, e, c0, c1, c2, m):
    """Pixels of tiles[a:e] (3 bytes each) take channels (c0, c1, c2) of themselves, XOR m. Called with
    literal channel offsets, so the compiler sees a fixed shuffle and vectorizes it."""
    u = np.uint64
    for q in range(a, e, u(3)):
        x0, x1, x2 = tiles[q + u(c0)], tiles[q + u(c1)], tiles[q + u(c2)]
        tiles[q], tiles[q + u(1)], tiles[q + u(2)] = x0 ^ m, x1 ^ m, x2 ^ m


@numba.njit(cache=True)
def _recolor(tiles, tile, order, negate, nch):
    """In place, tile t: channel order _CHANNEL_ORDERS[order[t]] (colour only), then XOR 255 if negate[t]."""
    u = np.uint64
    for t in range(order.size):
        a = u(t * tile)
        e = a + u(tile)
        m = np.uint8(255) if negate[t] else np.uint8(0)
        o = order[t]
        if nch == 1 or o == 0:
            if m:
                for q in range(a, e):
                    tiles[q] ^= m
        elif o == 1:
            _recolor_tile(tiles, a, e, 0, 2, 1, m)
        elif o == 2:
            _recolor_tile(tiles, a, e, 1, 0, 2, m)
        elif o == 3:
            _recolor_tile(tiles, a, e, 1, 2, 0, m)
        elif o == 4:
            _recolor_tile(tiles, a, e, 2, 0, 1, m)
        else:
            _recolor_tile(tiles, a, e, 2, 1, 0, m)


def _move_kernel(inverse: bool):
    """Compile the keyed block moves: forward grid block k = D_k(tile perm[k]); inverse tile perm[k] =
    D_k^-1(grid block k), D_k the block's dihedral map. Tiles are contiguous, so the keyed (random) block
    order costs one short contiguous read or write per block row; unmirrored rows are straight copies.
    Where each output row starts in its tile comes from a table (`_dihedral_rows`): computed inline, a
    bottom-up row order kept the compiler from vectorizing the straight copies (1.0 against 0.27 ms a frame).
    """

    @numba.njit(cache=True)
    def kernel(grid, tiles, wp, bs, perm, dihedral, rows, steps, nch):
        # Unsigned indices: numba then skips its negative-index wraparound test on every access (3x faster).
        # Negative steps (mirrored blocks) wrap modulo 2**64, which is exact.
        u = np.uint64
        bx = wp // bs
        tile = bs * bs * nch
        row = u(bs * nch)
        for k in range(perm.size):
            ky, kx = (k // bx) * bs, (k % bx) * bs
            base = perm[k] * tile
            d = dihedral[k]
            step = steps[d] * nch
            for y in range(bs):
                gp = u(((ky + y) * wp + kx) * nch)
                tp = u(base + rows[d, y] * nch)
                if step == nch:  # a tile row in order
                    for i in range(row):
                        if inverse:
                            tiles[tp + i] = grid[gp + i]
                        else:
                            grid[gp + i] = tiles[tp + i]
                elif step == -nch:  # a tile row backwards: its bytes reversed (the recolouring reversed the
                    e = tp + u(nch - 1)  # channels of these tiles beforehand, so they come out in order)
                    for i in range(row):
                        if inverse:
                            tiles[e - i] = grid[gp + i]
                        else:
                            grid[gp + i] = tiles[e - i]
                elif nch == 3:
                    for x in range(bs):
                        if inverse:
                            tiles[tp], tiles[tp + u(1)], tiles[tp + u(2)] = grid[gp], grid[gp + u(1)], grid[gp + u(2)]
                        else:
                            grid[gp], grid[gp + u(1)], grid[gp + u(2)] = tiles[tp], tiles[tp + u(1)], tiles[tp + u(2)]
                        gp += u(3)
                        tp += u(step)
                else:
                    for x in range(bs):
                        if inverse:
                            tiles[tp] = grid[gp]
                        else:
                            grid[gp] = tiles[tp]
                        gp += u(1)
                        tp += u(step)

    return kernel


def _dihedral_rows(bs: int) -> tuple[np.ndarray, np.ndarray]:
    """For each dihedral map d: the tile pixel where output row y starts, and the step between its pixels."""
    rows, steps = np.empty((8, bs), dtype=np.int64), np.empty(8, dtype=np.int64)
    y = np.arange(bs)
    for d in range(8):
        a0, ay, ax, b0, by, bx = _dihedral.py_func(d, bs - 1)
        rows[d] = (a0 + ay * y) * bs + b0 + by * y
        steps[d] = ax * bs + bx
    return rows, steps


_ROW_STEPS = _dihedral_rows(2)[1]  # per dihedral map: 1 a row in order, -1 backwards, else a column
_to_tiles, _from_tiles = _tiles_kernel(True), _tiles_kernel(False)
_scramble, _unscramble = _move_kernel(False), _move_kernel(True)


_scratch = threading.local()


def _scratch_buffer(name: str, shape: tuple) -> np.ndarray:
    """A per-thread buffer kept between calls: a stream encrypts frame after frame of one size, and a fresh
    multi-megabyte buffer would cost its page faults again on every frame (about 1 ms per 6 MB here)."""
    buf = getattr(_scratch, name, None)
    if buf is None or buf.shape != shape:
        buf = np.empty(shape, dtype=np.uint8)
        setattr(_scratch, name, buf)
    return buf


def _run(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int, inverse: bool,
         scratch: bool = False) -> np.ndarray:
    """Forward: true-size image -> padded scrambled grid; inverse: padded grid -> true-size image."""
    if block not in BLOCK_SIZES:
        raise InputError(f"block size must be one of {BLOCK_SIZES}, got {block}")
    gray = image.ndim == 2
    nch = 1 if gray else 3
    hp, wp = padded_size(height, width, block)
    n = (hp // block) * (wp // block)
    key = block_key(stream, n, color=not gray)
    # Colour order and negation are per-pixel, so they are applied to each source tile in place (the tile
    # that output block k takes is perm[k]); the block moves are then pure pixel copies.
    tile_order, tile_negate = np.empty_like(key.order), np.empty_like(key.negate)
    # Blocks whose rows run backwards move as reversed bytes, which also reverses each pixel's channels;
    # their tiles take the channel order composed with that reversal.
    order = np.where(_ROW_STEPS[key.dihedral] == -1, _REVERSED_ORDER[key.order], key.order)
    tile_order[key.perm] = _INVERSE_ORDER[order] if inverse else order
    tile_negate[key.perm] = key.negate
    src = np.ascontiguousarray(image).reshape(-1)
    tiles = _scratch_buffer("tiles", (n * block * block * nch,))
    shape = ((height, width) if inverse else (hp, wp)) + (() if gray else (nch,))
    out = _scratch_buffer("out", shape) if scratch else np.empty(shape, dtype=np.uint8)
    if inverse:
        _unscramble(src, tiles, wp, block, key.perm, key.dihedral, *_dihedral_rows(block), nch)
        _recolor(tiles, block * block * nch, tile_order, tile_negate, nch)
        _from_tiles(out.reshape(-1), tiles, height, width, block, wp // block, nch)
    else:
        _to_tiles(src, tiles, height, width, block, wp // block, nch)
        _recolor(tiles, block * block * nch, tile_order, tile_negate, nch)
        _scramble(out.reshape(-1), tiles, wp, block, key.perm, key.dihedral, *_dihedral_rows(block), nch)
    return out


def encrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, scratch: bool = False) -> np.ndarray:
    """Scramble into an image padded (edge replication) to a multiple of max(block, 16); the caller
    records the true size. scratch=True returns a per-thread buffer that the next call overwrites (for a
    caller that consumes it at once, as the JPEG encoder does)."""
    image = check_image(image)
    return _run(image, stream, block, image.shape[0], image.shape[1], inverse=False, scratch=scratch)


def decrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int) -> np.ndarray:
    """Undo `encrypt_blocks` on a (decoded) padded image, giving the true-size image."""
    image = check_image(image)
    if image.shape[:2] != padded_size(height, width, block):
        raise InputError("encrypted image size does not match its recorded size")
    return _run(image, stream, block, height, width, inverse=True)
