"""Stage 1 of ECEA: keyed pixel-block encryption before JPEG compression.

The image is padded (edge replication) to a multiple of max(B, 16) so blocks and JPEG MCUs align, cut
into BxB blocks, and each output block is a keyed source block after a keyed rotation/flip (one of 8),
an optional negative-positive transform (p -> 255 - p), and a keyed shuffle of whole pixels' colour
channels (one of 6 orders; all three channels move together, which keeps JPEG efficiency). Both
directions use one sub-block transform (block_simd.py), with inverse maps for decryption, so they cannot
drift apart: encryption copies the frame into contiguous block tiles and writes the padded grid from them
in the keyed order; decryption permutes the decoded grid in place.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from rdec.runtime.errors import InputError
from rdec.runtime.keys import KeyStream, draw_below, fisher_yates_from, invert_permutation

from .block_simd import CHANNEL_ORDERS as _CHANNEL_ORDERS
from .block_simd import dihedral, move, permute_in_place, to_tiles

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


def check_block(block) -> int:
    """The block size as an int; InputError unless it is one of BLOCK_SIZES (an integer: not 16.0 or True)."""
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block not in BLOCK_SIZES:
        raise InputError(f"block size must be one of {BLOCK_SIZES}, got {block!r}")
    return int(block)


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


@numba.njit(cache=True)
def _draw_block_key(words, n, rows):
    """The block permutation (Fisher-Yates), then every block's map (below 8), then every block's negation
    (below 2), then, for colour (rows = 3), every block's channel order (below 6), from the keystream words;
    ((perm, choices), words used), used = -1 if the words ran out."""
    perm = np.arange(n, dtype=np.int64)
    choices = np.zeros((3, n), dtype=np.int64)  # maps, negations, channel orders (0 for grayscale)
    w = fisher_yates_from(words, 0, perm)
    if w < 0:
        return (perm, choices), -1
    for row in range(rows):
        b = 8 if row == 0 else (2 if row == 1 else 6)
        for k in range(n):
            choices[row, k], w = draw_below(words, w, b)
            if choices[row, k] < 0:
                return (perm, choices), -1
    return (perm, choices), w


def block_key(stream: KeyStream, n_blocks: int, color: bool) -> BlockKey:
    """Draw every keyed choice from the keystream, in a fixed order: the block permutation, then the map of
    every block, their negations and their channel orders (one compiled call: as separate draws, the same
    values took 0.1 ms more a 1080p frame)."""
    rows = 3 if color else 2
    perm, choices = stream.run(lambda words: _draw_block_key(words, n_blocks, rows),
                               max(n_blocks - 1, 0) + rows * n_blocks)
    return BlockKey(perm, choices[0], choices[1], choices[2])


def _inverse_maps() -> list[int]:
    """The index of each dihedral map's inverse, found by composing the maps on a 2x2 block."""
    def apply(d, yx):
        a0, ay, ax, b0, by, bx = dihedral(d, 1)
        return a0 + ay * yx[0] + ax * yx[1], b0 + by * yx[0] + bx * yx[1]
    grid = [(y, x) for y in range(2) for x in range(2)]
    return [next(e for e in range(8) if all(apply(d, apply(e, p)) == p for p in grid)) for d in range(8)]


_INVERSE_MAP = np.array(_inverse_maps(), dtype=np.int64)
_scratch = threading.local()


def _scratch_buffer(name: str, shape: tuple) -> np.ndarray:
    """A per-thread uint8 buffer kept between calls: a stream encrypts frame after frame of one size, and a
    fresh multi-megabyte buffer would cost its page faults again on every frame (about 1 ms per 6 MB here)."""
    buf = getattr(_scratch, name, None)
    if buf is None or buf.shape != shape:
        buf = np.empty(shape, dtype=np.uint8)
        setattr(_scratch, name, buf)
    return buf


def _in_scratch(a: np.ndarray) -> bool:
    """Whether `a` lies in one of this thread's scratch buffers (which the next call overwrites)."""
    return any(np.may_share_memory(a, b) for b in vars(_scratch).values())


def _run(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int, inverse: bool,
         reuse: bool = False) -> np.ndarray:
    """(The callers have checked `block`.) Forward: true-size image -> tiles -> padded scrambled grid;
    inverse: padded grid -> true-size image, in place. reuse: forward, into the per-thread output buffer;
    inverse, in `image` itself if it is writable (and not a scratch buffer)."""
    gray = image.ndim == 2
    nch = 1 if gray else 3
    hp, wp = padded_size(height, width, block)
    key = block_key(stream, (hp // block) * (wp // block), color=not gray)
    if inverse:  # in the grid itself: the decoder's buffer if the caller lends it, else a copy
        lend = reuse and image.flags.writeable and image.flags.c_contiguous and not _in_scratch(image)
        grid = image if lend else np.array(image, order="C")
        src_of = invert_permutation(key.perm)  # image block t comes from grid block src_of[t]
        permute_in_place(grid.reshape(-1), wp, block, src_of, _INVERSE_MAP[key.dihedral][src_of],
                         _INVERSE_ORDER[key.order][src_of], key.negate[src_of], nch)
        return np.ascontiguousarray(grid[:height, :width])  # a view, unless the width was padded
    shape = (hp, wp) + (() if gray else (nch,))
    out = _scratch_buffer("blocks", shape) if reuse else np.empty(shape, dtype=np.uint8)
    tiles = _scratch_buffer("tiles", (hp * wp * nch,))
    to_tiles(np.ascontiguousarray(image).reshape(-1), tiles, height, width, wp, block, nch)
    move(tiles, out.reshape(-1), wp, block, key.perm, key.dihedral, key.order, key.negate, nch)
    return out


def encrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, scratch: bool = False) -> np.ndarray:
    """Scramble into an image padded (edge replication) to a multiple of max(block, 16); the caller
    records the true size. scratch=True returns a per-thread buffer that the next call overwrites (for a
    caller that consumes it at once, as the JPEG encoder does)."""
    image = check_image(image)
    block = check_block(block)
    if max(padded_size(*image.shape[:2], block)) > JPEG_MAX_SIDE:
        raise InputError(f"image {image.shape[1]}x{image.shape[0]} is too large for JPEG once padded to whole "
                         f"{max(block, MCU)}-pixel blocks (at most {JPEG_MAX_SIDE} pixels a side)")
    return _run(image, stream, block, image.shape[0], image.shape[1], inverse=False, reuse=scratch)


def decrypt_blocks(image: np.ndarray, stream: KeyStream, block: int, height: int, width: int,
                   in_place: bool = False) -> np.ndarray:
    """Undo `encrypt_blocks` on a (decoded) padded image, giving the true-size image. in_place=True lets it
    overwrite `image` (a decoded grid the caller no longer needs; not if it is read-only or one of the
    scratch buffers) and return a view of its first rows (a contiguous copy when the width was padded)."""
    image = check_image(image)
    block = check_block(block)
    if image.shape[:2] != padded_size(height, width, block):
        raise InputError("encrypted image size does not match its recorded size")
    return _run(image, stream, block, height, width, inverse=True, reuse=in_place)
