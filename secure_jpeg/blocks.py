"""Stage 1 of ECEA: keyed pixel-block encryption before JPEG compression.

The image is padded (edge replication) to a multiple of max(B, 16) so blocks and JPEG MCUs align, cut
into BxB blocks, and each output block is a keyed source block after a keyed rotation/flip (one of 8),
an optional negative-positive transform (p -> 255 - p), and a keyed shuffle of whole pixels' colour
channels (one of 6 orders; all three channels move together, which keeps JPEG efficiency). Encryption
and decryption are the same kernels run in the two directions, so they cannot drift apart.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numba
import numpy as np

from rdec.runtime.errors import InputError
from rdec.runtime.keys import KeyStream, fisher_yates

from .subblock import CHANNEL_ORDERS as _CHANNEL_ORDERS
from .subblock import SUB, dihedral, transform_gray, transform_rgb

BLOCK_SIZES = (8, 16, 32)
MCU = 16
JPEG_MAX_SIDE = 65500  # libjpeg-turbo's limit (JPEG_MAX_DIMENSION)
# The index of each channel order's inverse (output channel c takes source channel ORDER[c]).
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
    """Draw every keyed choice from the keystream, in a fixed order: the Fisher-Yates draws of the block
    permutation (as `KeyStream.permutation`), then per block the map, the negation and the channel order.
    One call draws them all, which gives the same values as drawing each in turn."""
    n = n_blocks
    bounds = np.concatenate([np.arange(n, 1, -1), np.repeat(np.array([8, 2, 6][:3 if color else 2]), n)])
    draws = stream.below(bounds)
    perm = fisher_yates(np.arange(n, dtype=np.int64), draws[:max(n - 1, 0)])
    rest = draws[max(n - 1, 0):].reshape(3 if color else 2, n)
    order = rest[2] if color else np.zeros(n, dtype=np.int64)
    return BlockKey(perm, rest[0], rest[1], order)


@numba.njit(cache=True, inline="always")
def _sub_blocks(src, s0, s_stride, dst, d0, d_stride, ns, d, case, m, sub_row, sub_col, nch):
    """One block of ns x ns sub-blocks: output sub-block (Y, X) is the keyed transform of source sub-block
    (sub_row[d, Y, X], sub_col[d, Y, X]), the block-level map being the same dihedral map on the sub-block grid."""
    for sy in range(ns):
        for sx in range(ns):
            s = s0 + sub_row[d, sy, sx] * SUB * s_stride + sub_col[d, sy, sx] * SUB * nch
            t = d0 + sy * SUB * d_stride + sx * SUB * nch
            if nch == 3:
                transform_rgb(src, s, s_stride, dst, t, d_stride, case, m)
            else:
                transform_gray(src, s, s_stride, dst, t, d_stride, case, m)


def _tiles_kernel(to_tiles: bool):
    """Compile the copy between the true-size image (h x w) and block-major tiles of the padded grid (tile
    j holds image block j, contiguous). Whole blocks move as untransformed sub-blocks (the identity, case 0);
    blocks that cross the true size are read with edge replication (that is the padding) or written cropped.
    The direction is a compile-time constant, so the source may be read-only (e.g. a caller's image)."""

    @numba.njit(cache=True)
    def kernel(img, tiles, h, w, wp, bs, sub_row, sub_col, nch):
        bx = wp // bs
        ns = bs // SUB
        img_stride, blk_stride = w * nch, bs * nch
        tile = bs * blk_stride
        for j in range(tiles.size // tile):
            iy, ix = (j // bx) * bs, (j % bx) * bs
            img0 = (iy * w + ix) * nch
            if iy + bs <= h and ix + bs <= w:
                if to_tiles:
                    _sub_blocks(img, img0, img_stride, tiles, j * tile, blk_stride, ns, 0, 0, 0, sub_row, sub_col, nch)
                else:
                    _sub_blocks(tiles, j * tile, blk_stride, img, img0, img_stride, ns, 0, 0, 0, sub_row, sub_col, nch)
            elif to_tiles:
                for y in range(bs):
                    r = min(iy + y, h - 1) * w
                    for x in range(bs):
                        q = (r + min(ix + x, w - 1)) * nch
                        for c in range(nch):
                            tiles[j * tile + (y * bs + x) * nch + c] = img[q + c]
            elif iy < h:
                n = min(bs, w - ix) * nch
                for y in range(min(bs, h - iy)):
                    img[img0 + y * img_stride: img0 + y * img_stride + n] = tiles[j * tile + y * blk_stride:
                                                                                  j * tile + y * blk_stride + n]

    return kernel


@numba.njit(cache=True)
def _move(src, dst, wp, bs, perm, dihedral, order, negate, sub_row, sub_col, nch, to_grid):
    """The keyed block moves, one kernel for both directions, with T_k = (dihedral[k], order[k], negate[k])
    (the caller passes inverse maps and orders for decryption): to_grid, grid block k of dst = T_k(tile
    perm[k] of src); else tile perm[k] of dst = T_k(grid block k of src).

    Tiles are contiguous, so the keyed (random) block order costs one short contiguous read or write per
    block, on one memory page, while the grid is walked in order; moving blocks straight between the image
    and the grid, 16 pages a block, was 10 % slower end to end.
    """
    bx = wp // bs
    ns = bs // SUB
    grid_stride, blk_stride = wp * nch, bs * nch
    tile = bs * blk_stride
    for k in range(perm.size):
        grid0 = ((k // bx) * bs * wp + (k % bx) * bs) * nch
        d = dihedral[k]
        case = d * 6 + order[k]
        m = np.uint8(255) if negate[k] else np.uint8(0)
        if to_grid:
            _sub_blocks(src, perm[k] * tile, blk_stride, dst, grid0, grid_stride, ns, d, case, m, sub_row, sub_col, nch)
        else:
            _sub_blocks(src, grid0, grid_stride, dst, perm[k] * tile, blk_stride, ns, d, case, m, sub_row, sub_col, nch)


@functools.lru_cache(maxsize=None)
def _sub_block_maps(bs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per dihedral map d, the source sub-block (row, column) of output sub-block (Y, X) in a block."""
    ns = bs // SUB
    y, x = np.mgrid[0:ns, 0:ns]
    rows, cols = np.empty((8, ns, ns), dtype=np.int64), np.empty((8, ns, ns), dtype=np.int64)
    for d in range(8):
        a0, ay, ax, b0, by, bx = dihedral(d, ns - 1)
        rows[d], cols[d] = a0 + ay * y + ax * x, b0 + by * y + bx * x
    return rows, cols


def _inverse_maps() -> list[int]:
    """The index of each dihedral map's inverse, found by composing the maps on a 2x2 block."""
    def apply(d, yx):
        a0, ay, ax, b0, by, bx = dihedral(d, 1)
        return a0 + ay * yx[0] + ax * yx[1], b0 + by * yx[0] + bx * yx[1]
    grid = [(y, x) for y in range(2) for x in range(2)]
    return [next(e for e in range(8) if all(apply(d, apply(e, p)) == p for p in grid)) for d in range(8)]


_INVERSE_MAP = np.array(_inverse_maps(), dtype=np.int64)
_to_tiles, _from_tiles = _tiles_kernel(True), _tiles_kernel(False)
_scratch = threading.local()


def scratch_buffer(name: str, shape: tuple) -> np.ndarray:
    """A per-thread uint8 buffer kept between calls: a stream encrypts frame after frame of one size, and a
    fresh multi-megabyte buffer would cost its page faults again on every frame (about 1 ms per 6 MB here)."""
    buf = getattr(_scratch, name, None)
    if buf is None or buf.shape != shape:
        buf = np.empty(shape, dtype=np.uint8)
        setattr(_scratch, name, buf)
    return buf


def _run(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int, inverse: bool,
         reuse: bool = False) -> np.ndarray:
    """Forward: true-size image -> padded scrambled grid; inverse: padded grid -> true-size image.
    reuse: forward, into the per-thread output buffer; inverse, back into `image` if it is writable."""
    if block not in BLOCK_SIZES:
        raise InputError(f"block size must be one of {BLOCK_SIZES}, got {block}")
    gray = image.ndim == 2
    nch = 1 if gray else 3
    hp, wp = padded_size(height, width, block)
    key = block_key(stream, (hp // block) * (wp // block), color=not gray)
    dihedral, order = key.dihedral, key.order
    if inverse:
        dihedral, order = _INVERSE_MAP[dihedral], _INVERSE_ORDER[order]
    shape = ((height, width) if inverse else (hp, wp)) + (() if gray else (nch,))
    src = np.ascontiguousarray(image)
    tiles = scratch_buffer("tiles", (hp * wp * nch,))
    maps = _sub_block_maps(block)
    if inverse:
        _move(src.reshape(-1), tiles, wp, block, key.perm, dihedral, order, key.negate, *maps, nch, False)
        if reuse and src.flags.writeable:  # the whole padded grid back in place (no fresh frame to fault in)
            _from_tiles(src.reshape(-1), tiles, hp, wp, wp, block, *maps, nch)
            return np.ascontiguousarray(src[:height, :width])  # a view, unless the width was padded
        out = np.empty(shape, dtype=np.uint8)
        _from_tiles(out.reshape(-1), tiles, height, width, wp, block, *maps, nch)
        return out
    out = scratch_buffer("blocks", shape) if reuse else np.empty(shape, dtype=np.uint8)
    _to_tiles(src.reshape(-1), tiles, height, width, wp, block, *maps, nch)
    _move(tiles, out.reshape(-1), wp, block, key.perm, dihedral, order, key.negate, *maps, nch, True)
    return out


def encrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, scratch: bool = False) -> np.ndarray:
    """Scramble into an image padded (edge replication) to a multiple of max(block, 16); the caller
    records the true size. scratch=True returns a per-thread buffer that the next call overwrites (for a
    caller that consumes it at once, as the JPEG encoder does)."""
    image = check_image(image)
    if block in BLOCK_SIZES and max(padded_size(*image.shape[:2], block)) > JPEG_MAX_SIDE:
        raise InputError(f"image {image.shape[1]}x{image.shape[0]} is too large for JPEG once padded to whole "
                         f"{max(block, MCU)}-pixel blocks (at most {JPEG_MAX_SIDE} pixels a side)")
    return _run(image, stream, block, image.shape[0], image.shape[1], inverse=False, reuse=scratch)


def decrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int,
                   in_place: bool = False) -> np.ndarray:
    """Undo `encrypt_blocks` on a (decoded) padded image, giving the true-size image. in_place=True lets it
    overwrite `image` (a decoded grid the caller no longer needs) and return a view of it."""
    image = check_image(image)
    if image.shape[:2] != padded_size(height, width, block):
        raise InputError("encrypted image size does not match its recorded size")
    return _run(image, stream, block, height, width, inverse=True, reuse=in_place)
