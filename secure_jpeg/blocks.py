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
from rdec.runtime.keys import KeyStream

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
    """Draw every keyed choice from the keystream, in a fixed order."""
    perm = stream.permutation(n_blocks)
    dihedral = stream.below(np.full(n_blocks, 8))
    negate = stream.below(np.full(n_blocks, 2))
    order = stream.below(np.full(n_blocks, 6)) if color else np.zeros(n_blocks, dtype=np.int64)
    return BlockKey(perm, dihedral, negate, order)


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


@numba.njit(cache=True)
def _scramble(src, dst, h, w, wp, bs, perm, dihedral, order, negate, sub_row, sub_col, nch, forward):
    """The whole stage in one pass, one kernel for both directions, with T_k = (dihedral[k], order[k],
    negate[k]) (the caller passes inverse maps and orders for decryption):
    forward, grid block k of dst (the padded grid) = T_k(image block perm[k] of src, the true-size image);
    inverse, image block perm[k] of dst (true size) = T_k(grid block k of src (the padded grid)).

    Blocks move as 8x8 sub-blocks through SIMD shuffles (subblock.py), reading and writing both images
    in place, with no intermediate copy. Image blocks that cross the true size go through a small scratch
    block: filled by edge replication (the padding) before a forward move, cropped after an inverse one.
    """
    bx = wp // bs
    ns = bs // SUB
    grid_stride, img_stride, blk_stride = wp * nch, w * nch, bs * nch
    scratch = np.empty(bs * blk_stride, dtype=np.uint8)
    for k in range(perm.size):
        grid0 = ((k // bx) * bs * wp + (k % bx) * bs) * nch
        iy, ix = (perm[k] // bx) * bs, (perm[k] % bx) * bs
        img0 = (iy * w + ix) * nch
        d = dihedral[k]
        case = d * 6 + order[k]
        m = np.uint8(255) if negate[k] else np.uint8(0)
        edge = iy + bs > h or ix + bs > w
        if forward and not edge:
            _sub_blocks(src, img0, img_stride, dst, grid0, grid_stride, ns, d, case, m, sub_row, sub_col, nch)
        elif forward:
            for y in range(bs):
                r = min(iy + y, h - 1) * w
                for x in range(bs):
                    q = (r + min(ix + x, w - 1)) * nch
                    for c in range(nch):
                        scratch[(y * bs + x) * nch + c] = src[q + c]
            _sub_blocks(scratch, 0, blk_stride, dst, grid0, grid_stride, ns, d, case, m, sub_row, sub_col, nch)
        elif not edge:
            _sub_blocks(src, grid0, grid_stride, dst, img0, img_stride, ns, d, case, m, sub_row, sub_col, nch)
        else:
            _sub_blocks(src, grid0, grid_stride, scratch, 0, blk_stride, ns, d, case, m, sub_row, sub_col, nch)
            for y in range(min(bs, h - iy)):
                n = min(bs, w - ix) * nch
                dst[img0 + y * img_stride: img0 + y * img_stride + n] = scratch[y * blk_stride: y * blk_stride + n]


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
         scratch: bool = False) -> np.ndarray:
    """Forward: true-size image -> padded scrambled grid; inverse: padded grid -> true-size image."""
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
    out = scratch_buffer("blocks", shape) if scratch else np.empty(shape, dtype=np.uint8)
    _scramble(np.ascontiguousarray(image).reshape(-1), out.reshape(-1), height, width, wp, block, key.perm,
              dihedral, order, key.negate, *_sub_block_maps(block), nch, not inverse)
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
