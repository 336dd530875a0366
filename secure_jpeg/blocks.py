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
JPEG_MAX_SIDE = 65500  # libjpeg-turbo's limit (JPEG_MAX_DIMENSION)
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
    if image.shape[0] > JPEG_MAX_SIDE or image.shape[1] > JPEG_MAX_SIDE:
        raise InputError(f"image is larger than JPEG allows ({JPEG_MAX_SIDE} pixels a side)")
    return image


def block_key(stream: KeyStream, n_blocks: int, color: bool) -> BlockKey:
    """Draw every keyed choice from the keystream, in a fixed order."""
    perm = stream.permutation(n_blocks)
    dihedral = stream.below(np.full(n_blocks, 8))
    negate = stream.below(np.full(n_blocks, 2))
    order = stream.below(np.full(n_blocks, 6)) if color else np.zeros(n_blocks, dtype=np.int64)
    return BlockKey(perm, dihedral, negate, order)


def _dihedral(d: int, last: int) -> tuple[int, ...]:
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


@numba.njit(cache=True, inline="always")
def _load32(a, p):
    """Bytes p..p+3 as a little-endian uint32 (the compiler makes it one load)."""
    u, w = np.uint64, np.uint32
    return w(a[p]) | (w(a[p + u(1)]) << w(8)) | (w(a[p + u(2)]) << w(16)) | (w(a[p + u(3)]) << w(24))


@numba.njit(cache=True, inline="always")
def _store32(a, p, v):
    """v into bytes p..p+3, little-endian (the compiler makes it one store)."""
    u, w = np.uint64, np.uint32
    a[p], a[p + u(1)] = np.uint8(v & w(255)), np.uint8((v >> w(8)) & w(255))
    a[p + u(2)], a[p + u(3)] = np.uint8((v >> w(16)) & w(255)), np.uint8(v >> w(24))


@numba.njit(cache=True)
def _move(dst, src, wp, bs, perm, dihedral, start_row, start_col, step_row, step_col, nch, to_grid):
    """The keyed block moves, one kernel for both directions: to_grid, grid block k = D(tile perm[k]) with
    D = the map of `dihedral[k]`; else tile perm[k] = D(grid block k) (the caller passes inverse maps).

    The destination block is written row by row in order; output row y starts at source pixel
    (start_row[d, y], start_col[d, y]) and steps (step_row[d], step_col[d]) pixels. Tiles are contiguous,
    so the keyed (random) block order costs one short contiguous read or write per block row. Unmirrored
    rows are straight copies; backward rows copy reversed bytes (the recolouring reverses the channels of
    these tiles too, so they come out in order); column walks (transposing maps) move 3-byte pixels as
    32-bit words, the byte written past each pixel being the next one's, rewritten next (the row's first and
    last pixels move by bytes, so no word reaches past either array). Row starts come from a table: computed
    inline, a bottom-up row order kept the compiler from vectorizing the straight copies (1.0 against 0.27 ms
    a frame).
    """
    # Unsigned indices: numba then skips its negative-index wraparound test on every access (3x faster).
    # Negative steps (mirrored blocks) wrap modulo 2**64, which is exact.
    u = np.uint64
    bx = wp // bs
    tile_row = bs * nch
    grid_row = wp * nch
    drow, srow = (grid_row, tile_row) if to_grid else (tile_row, grid_row)
    row = u(tile_row)
    for k in range(perm.size):
        grid0 = ((k // bx) * bs * wp + (k % bx) * bs) * nch
        tile0 = perm[k] * bs * tile_row
        dst0, src0 = (grid0, tile0) if to_grid else (tile0, grid0)
        d = dihedral[k]
        step = step_row[d] * srow + step_col[d] * nch
        for y in range(bs):
            dp = u(dst0 + y * drow)
            sp = u(src0 + start_row[d, y] * srow + start_col[d, y] * nch)
            if step == nch:
                for i in range(row):
                    dst[dp + i] = src[sp + i]
            elif step == -nch:
                e = sp + u(nch - 1)
                for i in range(row):
                    dst[dp + i] = src[e - i]
            elif nch == 3:
                dst[dp], dst[dp + u(1)], dst[dp + u(2)] = src[sp], src[sp + u(1)], src[sp + u(2)]
                for x in range(1, bs - 1):
                    _store32(dst, dp + u(3 * x), _load32(src, sp + u(x * step)))
                dp += u(3 * (bs - 1))
                sp += u((bs - 1) * step)
                dst[dp], dst[dp + u(1)], dst[dp + u(2)] = src[sp], src[sp + u(1)], src[sp + u(2)]
            else:
                for x in range(bs):
                    dst[dp + u(x)] = src[sp + u(x * step)]


def _dihedral_rows(bs: int, inverse: bool = False) -> tuple[np.ndarray, ...]:
    """Per dihedral map d (or its inverse): where output row y starts (source row, column) and the
    (row, column) step between its pixels."""
    start_row, start_col = np.empty((8, bs), dtype=np.int64), np.empty((8, bs), dtype=np.int64)
    step_row, step_col = np.empty(8, dtype=np.int64), np.empty(8, dtype=np.int64)
    y = np.arange(bs)
    for d in range(8):
        a0, ay, ax, b0, by, bx = _dihedral(_INVERSE_MAP[d] if inverse else d, bs - 1)
        start_row[d], start_col[d] = a0 + ay * y, b0 + by * y
        step_row[d], step_col[d] = ax, bx
    return start_row, start_col, step_row, step_col


def _inverse_maps() -> list[int]:
    """The index of each dihedral map's inverse, found by composing the maps on a 2x2 block."""
    def apply(d, yx):
        a0, ay, ax, b0, by, bx = _dihedral(d, 1)
        return a0 + ay * yx[0] + ax * yx[1], b0 + by * yx[0] + bx * yx[1]
    grid = [(y, x) for y in range(2) for x in range(2)]
    return [next(e for e in range(8) if all(apply(d, apply(e, p)) == p for p in grid)) for d in range(8)]


_INVERSE_MAP = _inverse_maps()


_ROW_STEPS = _dihedral_rows(2)[3]  # per dihedral map: column step 1 a row in order, -1 backwards, 0 a column
_to_tiles, _from_tiles = _tiles_kernel(True), _tiles_kernel(False)


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
    maps = _dihedral_rows(block, inverse)
    shape = ((height, width) if inverse else (hp, wp)) + (() if gray else (nch,))
    out = _scratch_buffer("out", shape) if scratch else np.empty(shape, dtype=np.uint8)
    if inverse:
        _move(tiles, src, wp, block, key.perm, key.dihedral, *maps, nch, False)
        _recolor(tiles, block * block * nch, tile_order, tile_negate, nch)
        _from_tiles(out.reshape(-1), tiles, height, width, block, wp // block, nch)
    else:
        _to_tiles(src, tiles, height, width, block, wp // block, nch)
        _recolor(tiles, block * block * nch, tile_order, tile_negate, nch)
        _move(out.reshape(-1), tiles, wp, block, key.perm, key.dihedral, *maps, nch, True)
    return out


def encrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, scratch: bool = False) -> np.ndarray:
    """Scramble into an image padded (edge replication) to a multiple of max(block, 16); the caller
    records the true size. scratch=True returns a per-thread buffer that the next call overwrites (for a
    caller that consumes it at once, as the JPEG encoder does)."""
    image = check_image(image)
    if block in BLOCK_SIZES and max(padded_size(*image.shape[:2], block)) > JPEG_MAX_SIDE:
        raise InputError(f"image {image.shape[1]}x{image.shape[0]} is too large for JPEG once padded to whole "
                         f"{max(block, MCU)}-pixel blocks (at most {JPEG_MAX_SIDE} pixels a side)")
    return _run(image, stream, block, image.shape[0], image.shape[1], inverse=False, scratch=scratch)


def decrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int) -> np.ndarray:
    """Undo `encrypt_blocks` on a (decoded) padded image, giving the true-size image."""
    image = check_image(image)
    if image.shape[:2] != padded_size(height, width, block):
        raise InputError("encrypted image size does not match its recorded size")
    return _run(image, stream, block, height, width, inverse=True)
