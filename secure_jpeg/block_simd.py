"""Stage 1's compiled kernels: the keyed transform of one 8x8 or 16x16 pixel sub-block as SIMD shuffles (a
dihedral map, i.e. rotation/flip, a channel order and a negation, read from one strided image and written
to another in a single pass), and the block copies and keyed block moves built on it.

Numba has no byte-shuffle instructions, so the transform is emitted as LLVM IR with constant shuffle masks
(`shufflevector`), which LLVM lowers to the target's own shuffles: pshufb/vpermb on x86-64, tbl/zip on
aarch64 (Jetson). No library does a keyed dihedral-plus-channel shuffle of strided blocks, and a C
extension would need a compiler wherever rdec is installed; numba, already a dependency, compiles this.

One function handles all 8 x 6 (map, order) cases behind an LLVM `switch`, for 1 or 3 bytes a pixel and a
side of 8 or 16 pixels (blocks of 16 and 32 move as 16x16 sub-blocks):
- maps that keep rows as rows (4 of 8): each output row is one source row, its pixels in order or
  reversed and its channels reordered: one load, one shuffle, one XOR, one store;
- transposing maps: the source rows (in the map's row order) are widened to 32 bits a pixel, transposed
  by log2(side) rounds of two-input zips, and narrowed back with the channel order; rows are stored in the
  map's order.
A row travels as a vector of the next power of two (24 -> 32, 48 -> 64 bytes), loaded and stored in
power-of-two pieces. The kernels that inline the transform live in this file too, so that numba's cache,
which watches the file of each cached function, recompiles them whenever the transform changes.
"""
from __future__ import annotations

import functools

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

SUB = 8  # the smallest sub-block side, in pixels (blocks of 16 and 32 move as 16x16 sub-blocks, see `side_of`)
CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def dihedral(d: int, last: int) -> tuple[int, ...]:
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


def side_of(bs: int) -> int:
    """The sub-block side a block of bs pixels moves in: 16 for blocks of 16 and 32 (a 16-pixel row is one
    48-byte vector, half the loads, shuffles and stores of two 8-pixel ones), else 8."""
    return 16 if bs % 16 == 0 else SUB


def _zips(side: int) -> tuple[list[int], list[int]]:
    """Masks interleaving the first (second) halves of two side-lane vectors."""
    half = side // 2
    return ([j for i in range(half) for j in (i, side + i)], [j for i in range(half, side) for j in (i, side + i)])


def _case_plan(d: int, o: int, nch: int, side: int = SUB) -> tuple[bool, list[int], list[int], list[int]]:
    """(transposed, source row loaded as vector i, output row y -> stored vector, byte mask of the final
    shuffle) for map d and channel order o on a side x side sub-block; for rows, vector i is output row i's
    source row."""
    a0, ay, ax, b0, by, bx = dihedral(d, side - 1)
    order = CHANNEL_ORDERS[o] if nch == 3 else (0,)
    if ax == 0:  # rows stay rows: output row y is source row a0 + ay*y, pixel x its pixel b0 + bx*x
        mask = [nch * (b0 + bx * x) + order[c] for x in range(side) for c in range(nch)]
        return False, [a0 + ay * y for y in range(side)], list(range(side)), mask
    # Load L_i = source row a0 + ax*i; the transpose T has T[j][i] = L_i[j], and output pixel (y, x) is
    # source (a0 + ax*x, b0 + by*y) = L_x[b0 + by*y] = T[b0 + by*y][x].
    mask = [4 * x + order[c] for x in range(side) for c in range(nch)]
    return True, [a0 + ax * i for i in range(side)], [b0 + by * y for y in range(side)], mask


def _consts(values: list[int]) -> ir.Constant:
    return ir.Constant(ir.VectorType(ir.IntType(32), len(values)), values)


def _pieces(n: int) -> list[int]:
    """n bytes as power-of-two pieces, largest first (48 = 32 + 16, 24 = 16 + 8)."""
    return [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]


def _emit_case(builder, src, src_stride, dst, dst_stride, m, d, o, nch, side):
    """A row of n = side * nch bytes travels as a vector of the next power of two, loaded and stored as
    power-of-two pieces: shuffles with an odd-sized result (24 or 48 bytes) would be split byte by byte."""
    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    n = side * nch
    width = 1 << (n - 1).bit_length()
    transposed, load_rows, store_rows, mask = _case_plan(d, o, nch, side)

    def at(base, stride, r, off, size):  # bytes off.. of row r as a vector pointer
        p = builder.gep(base, [builder.add(builder.mul(stride, ir.Constant(i64, r)), ir.Constant(i64, off))])
        return builder.bitcast(p, ir.VectorType(i8, size).as_pointer())

    def load(r):  # the pieces concatenated into one vector of `width` bytes (its last width - n unused)
        v, off = None, 0
        for size in _pieces(n):
            piece = builder.load(at(src, src_stride, r, off, size), align=1)
            if v is None:
                v = piece
            else:  # widen the piece to v's length (off), then join the two: 2 * off lanes, off + size used
                grown = builder.shuffle_vector(piece, piece, _consts([i % size for i in range(off)]))
                v = builder.shuffle_vector(v, grown, _consts(list(range(off + size)) + [0] * (off - size)))
            off += size
        return v if v.type.count == width else builder.shuffle_vector(v, v, _consts([i % off for i in range(width)]))

    def store(v, y):
        off = 0
        for size in _pieces(n):
            piece = builder.shuffle_vector(v, v, _consts(list(range(off, off + size))))
            builder.store(piece, at(dst, dst_stride, y, off, size), align=1)
            off += size

    rows = [load(r) for r in load_rows]
    if transposed:
        widen = _consts([nch * (b // 4) + (b % 4 if b % 4 < nch else 0) for b in range(4 * side)])
        v = [builder.bitcast(builder.shuffle_vector(r, r, widen), ir.VectorType(i32, side)) for r in rows]
        lo, hi = _zips(side)
        for _ in range(side.bit_length() - 1):  # log2(side) rounds of zips transpose the matrix
            w = []
            for i in range(side // 2):
                w += [builder.shuffle_vector(v[i], v[i + side // 2], _consts(lo)),
                      builder.shuffle_vector(v[i], v[i + side // 2], _consts(hi))]
            v = w
        rows = [builder.bitcast(t, ir.VectorType(i8, 4 * side)) for t in v]
        out = {y: rows[store_rows[y]] for y in range(side)}
    else:
        out = {y: rows[y] for y in range(side)}
    splat = builder.insert_element(ir.Constant(ir.VectorType(i8, width), None), m, ir.Constant(i32, 0))
    splat = builder.shuffle_vector(splat, splat, _consts([0] * width))
    full = _consts(mask + [0] * (width - n))
    for y in range(side):
        store(builder.xor(builder.shuffle_vector(out[y], out[y], full), splat), y)


def emit_transform(builder, src, src_stride, dst, dst_stride, case, m, nch, side=SUB):
    """Emit the transform of a side x side sub-block at the builder's position: a `switch` on case (d * 6 + o)
    over every map and channel order, an unknown case trapping; the builder is left after it. src and dst
    point at the sub-blocks' first bytes."""
    fn = builder.function
    end, bad = fn.append_basic_block("sub_end"), fn.append_basic_block("sub_bad")
    switch = builder.switch(case, bad)
    builder.position_at_end(bad)
    trap = builder.module.globals.get("llvm.trap") or ir.Function(
        builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.trap")
    builder.call(trap, [])
    builder.unreachable()
    for d in range(8):
        for o in range(6 if nch == 3 else 1):
            bb = fn.append_basic_block(f"sub_{d}_{o}")
            switch.add_case(ir.Constant(ir.IntType(64), d * 6 + o), bb)
            builder.position_at_end(bb)
            _emit_case(builder, src, src_stride, dst, dst_stride, m, d, o, nch, side)
            builder.branch(end)
    builder.position_at_end(end)


@intrinsic
def transform(typingctx, src, src_off, src_stride, dst, dst_off, dst_stride, case, m, nch, side):
    """dst sub-block (at byte dst_off, rows dst_stride bytes apart) = case (d * 6 + o) applied to the side x
    side src sub-block of nch bytes a pixel, every byte XOR m. nch and side are compile-time constants, so
    only that variant is emitted. src and dst are uint8 pointers (`ptr` of a buffer); the loads and stores
    are unchecked, so the caller keeps all rows inside both buffers (blocks._run sizes every buffer). An
    unknown case traps (it cannot be drawn: that would be a bug, not a wrong pixel)."""
    for a in (src, dst):
        if not (isinstance(a, types.CPointer) and a.dtype == types.uint8):
            return None
    if not (isinstance(nch, types.IntegerLiteral) and nch.literal_value in (1, 3)
            and isinstance(side, types.IntegerLiteral) and side.literal_value in (SUB, 16)):
        return None
    sig = types.void(src, types.int64, types.int64, dst, types.int64, types.int64, types.int64, types.uint8, nch,
                     side)

    def codegen(context, builder, signature, args):
        a_src, s_off, s_stride, a_dst, d_off, d_stride, k, mm = args[:8]
        emit_transform(builder, builder.gep(a_src, [s_off]), s_stride, builder.gep(a_dst, [d_off]), d_stride, k,
                       mm, nch.literal_value, side.literal_value)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def ptr(typingctx, arr):
    """The data pointer of a flat contiguous array. The kernels pass buffers around as raw pointers: numba
    counts references to arrays handed to an inlined function, two atomic calls per array per block."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"):
        return None
    sig = types.CPointer(arr.dtype)(arr)

    def codegen(context, builder, signature, args):
        return context.make_array(signature.args[0])(context, builder, args[0]).data

    return sig, codegen


def _make_prefetch(write: int):
    @intrinsic
    def prefetch(typingctx, p, off):
        """Ask the cache for byte `off` after pointer p, for reading (or, made with write=1, for writing: the
        line comes in owned, so the stores that follow do not wait for it). llvm.prefetch: a hint that never
        faults."""
        if not isinstance(p, types.CPointer):
            return None
        sig = types.void(p, types.int64)

        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            p = builder.gep(args[0], [args[1]])
            fn = builder.module.globals.get("llvm.prefetch.p0") or ir.Function(
                builder.module, ir.FunctionType(ir.VoidType(), [p.type, i32, i32, i32]), "llvm.prefetch.p0")
            builder.call(fn, [p, ir.Constant(i32, write), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    return prefetch


@intrinsic
def copy_fixed(typingctx, src, src_off, dst, dst_off, nbytes):
    """Copy nbytes, a compile-time constant, from src + src_off to dst + dst_off (uint8 pointers) as one
    vector load and store (a loop of constant length stays a byte loop here: 4x slower for block rows).
    Unchecked, like the transform."""
    for a in (src, dst):
        if not (isinstance(a, types.CPointer) and a.dtype == types.uint8):
            return None
    if not isinstance(nbytes, types.IntegerLiteral):
        return None
    vec = ir.VectorType(ir.IntType(8), nbytes.literal_value).as_pointer()
    sig = types.void(src, types.int64, dst, types.int64, nbytes)

    def codegen(context, builder, signature, args):
        v = builder.load(builder.bitcast(builder.gep(args[0], [args[1]]), vec), align=1)
        builder.store(v, builder.bitcast(builder.gep(args[2], [args[3]]), vec), align=1)
        return context.get_dummy_value()

    return sig, codegen


prefetch = _make_prefetch(0)
prefetch_write = _make_prefetch(1)


AHEAD = 4  # blocks the keyed walks prefetch ahead: 2 to 8 do alike, none is 1.3x slower on a cold frame
# Grid blocks encryption prefetches for writing. 16 gained 0.4-0.6 ms of 2.5-2.8 on a cold 1080p frame on a
# Xeon (2026-12-03, older kernels); on the EPYC (Zen 4) 8 is 0.07 ms faster end to end than 16, and prefetching
# the tiles for writing as well was 0.23 ms slower than not (A/B in one process, 2026-12-04).
WRITE_AHEAD = 8


@numba.njit(cache=True, inline="always")
def _prefetch_block(p, at, stride, rows, row_bytes, write=False):
    """Prefetch every cache line of `rows` rows of `row_bytes` bytes, `stride` apart, from byte `at` after
    pointer p (for writing if `write`)."""
    for y in range(rows):
        for b in range(0, row_bytes + 63, 64):
            if write:
                prefetch_write(p, at + y * stride + min(b, row_bytes - 1))
            else:
                prefetch(p, at + y * stride + min(b, row_bytes - 1))


# The kernels take the block size and the bytes a pixel as compile-time constants (`_kernels`), so the
# sub-block loops unroll and every offset inside a block is a constant multiple of a stride: the keyed moves
# of a 1080p frame take 0.53 instead of 0.80 ms with the data in cache. Buffers travel as raw pointers
# (`ptr`), which numba does not reference-count.


@numba.njit(cache=True, inline="always")
def _sub_blocks(sp, s0, s_stride, dp, d0, d_stride, d, case, m, sr, sc, bs, nch, side):
    """One block of ns x ns sub-blocks of side pixels (side_of(bs)): output sub-block (Y, X) is the keyed
    transform of source sub-block (sr[d, Y, X], sc[d, Y, X]) (tables flattened), the block-level map being
    the same dihedral map on the sub-block grid."""
    ns = bs // side
    for sy in range(ns):
        for sx in range(ns):
            q = (d * ns + sy) * ns + sx
            s = s0 + sr[q] * side * s_stride + sc[q] * (side * nch)
            t = d0 + sy * side * d_stride + sx * (side * nch)
            transform(sp, s, s_stride, dp, t, d_stride, case, m, nch, side)


@numba.njit(cache=True, inline="always")
def _grid_at(k, bx, bs, wp, nch):
    """Byte offset of block k (raster order, bx blocks a row) in a grid wp pixels wide."""
    return ((k // bx) * bs * wp + (k % bx) * bs) * nch


@numba.njit(cache=True, inline="always")
def _next_block(at, blk, stride, band):
    """The byte offset of the next block in raster order after the block at `at` (blk bytes a block row,
    stride bytes a grid row, band bytes a row of blocks): grids are walked in order without a division."""
    at += blk
    return at + band - stride if at % stride == 0 else at


@functools.lru_cache(maxsize=None)
def _kernels(bs: int, nch: int):
    """The kernels compiled for one block size and bytes a pixel (to_tiles, move, permute_in_place). They
    close over plain ints only, so numba caches one version per pair (a closure over another compiled
    function or an intrinsic would be compiled again in every process)."""
    blk = bs * nch  # bytes in a block row
    tile = bs * blk  # bytes in a block
    side = side_of(bs)

    @numba.njit(cache=True)
    def to_tiles(img, tiles, h, w, wp):
        n_tiles = tiles.size // tile
        ip, tp = ptr(img), ptr(tiles)
        iy, ix = 0, 0
        for j in range(n_tiles):
            if ix + bs <= w:  # rows past the true height repeat its last row
                for y in range(bs):
                    copy_fixed(ip, (min(iy + y, h - 1) * w + ix) * nch, tp, j * tile + y * blk, blk)
            else:
                for y in range(bs):
                    r = min(iy + y, h - 1) * w
                    for x in range(bs):
                        q = (r + min(ix + x, w - 1)) * nch
                        for c in range(nch):
                            tiles[j * tile + (y * bs + x) * nch + c] = img[q + c]
            ix += bs
            if ix == wp:
                ix = 0
                iy += bs

    @numba.njit(cache=True)
    def move(tiles, grid, wp, perm, maps, order, negate, sub_row, sub_col):
        stride = wp * nch
        band = bs * stride  # bytes in a row of blocks
        n = perm.size
        tp, gp, sr, sc = ptr(tiles), ptr(grid), ptr(sub_row), ptr(sub_col)
        at = 0  # block k's first byte in the grid, and block k + WRITE_AHEAD's
        ahead = _grid_at(WRITE_AHEAD, wp // bs, bs, wp, nch)
        for k in range(n):
            if k + AHEAD < n:
                _prefetch_block(tp, perm[k + AHEAD] * tile, tile, 1, tile)
            if k + WRITE_AHEAD < n:
                _prefetch_block(gp, ahead, stride, bs, blk, True)
                ahead = _next_block(ahead, blk, stride, band)
            d = maps[k]
            _sub_blocks(tp, perm[k] * tile, blk, gp, at, stride, d, d * 6 + order[k],
                        np.uint8(-negate[k] & 255), sr, sc, bs, nch, side)
            at = _next_block(at, blk, stride, band)

    @numba.njit(cache=True)
    def permute_in_place(grid, wp, src_of, maps, order, negate, sub_row, sub_col):
        bx = wp // bs
        stride = wp * nch
        first = np.empty(tile, dtype=np.uint8)
        done = np.zeros(src_of.size, dtype=np.bool_)
        gp, fp, sr, sc = ptr(grid), ptr(first), ptr(sub_row), ptr(sub_col)
        for t0 in range(src_of.size):
            if done[t0]:
                continue
            at0 = _grid_at(t0, bx, bs, wp, nch)
            for y in range(bs):
                copy_fixed(gp, at0 + y * stride, fp, y * blk, blk)
            ahead = t0
            for _ in range(AHEAD):
                ahead = src_of[ahead]
            t = t0
            while True:
                done[t] = True
                ahead = src_of[ahead]
                _prefetch_block(gp, _grid_at(ahead, bx, bs, wp, nch), stride, bs, blk)
                s = src_of[t]
                d = maps[t]
                case, m = d * 6 + order[t], np.uint8(-negate[t] & 255)
                at = _grid_at(t, bx, bs, wp, nch)
                last = s == t0  # the cycle's first block, from its copy (one call site: one copy of the code)
                _sub_blocks(fp if last else gp, 0 if last else _grid_at(s, bx, bs, wp, nch), blk if last else stride,
                            gp, at, stride, d, case, m, sr, sc, bs, nch, side)
                if last:
                    break
                t = s

    return to_tiles, move, permute_in_place


def to_tiles(img: np.ndarray, tiles: np.ndarray, h: int, w: int, wp: int, bs: int, nch: int) -> None:
    """Copy the true-size image (h x w, flat) into block-major tiles of the padded grid (tile j holds image
    block j, contiguous): whole blocks a row at a time, blocks that cross the true size with edge
    replication (that is the padding). Walks the image in order, so a frame that comes in cold from memory
    streams in (as the tiles are written in order too, the hardware prefetchers need no hints)."""
    _kernels(bs, nch)[0](img, tiles, h, w, wp)


def move(tiles: np.ndarray, grid: np.ndarray, wp: int, bs: int, perm, maps, order, negate, nch: int) -> None:
    """Encryption's keyed moves: grid block k = T_k(tile perm[k]), T_k = (maps[k], order[k], negate[k]).

    The grid is written in order; the tiles are read in the keyed (random) order, each one short and
    contiguous, on one memory page, and prefetched AHEAD blocks early. (Moving blocks straight from the
    image, 16 pages a block, was 10 % slower end to end.) The grid's rows of block k + WRITE_AHEAD are
    prefetched for writing: a block's rows lie on bs different lines of a frame that is cold by now, and
    stores that wait for their lines stall the loop.
    """
    _kernels(bs, nch)[1](tiles, grid, wp, perm, maps, order, negate, *_flat_maps(bs))


def permute_in_place(grid: np.ndarray, wp: int, bs: int, src_of, maps, order, negate, nch: int) -> None:
    """Decryption's keyed moves, inside the decoded grid: block t becomes T_t(block src_of[t]) for every t,
    T_t = (maps[t], order[t], negate[t]).

    Each cycle of src_of is followed from its first block, which waits in a small buffer until the cycle
    closes; the block AHEAD steps further along the cycle is prefetched, as the walk is random. In place,
    the frame moves once instead of twice through tiles (1.7 against 2.3 ms a 1080p frame).
    """
    _kernels(bs, nch)[2](grid, wp, src_of, maps, order, negate, *_flat_maps(bs))


@functools.lru_cache(maxsize=None)
def _flat_maps(bs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per dihedral map d, the source sub-block (row, column) of output sub-block (Y, X) in a block, flattened
    and read-only (the kernels index them as [(d * ns + Y) * ns + X])."""
    ns = bs // side_of(bs)
    y, x = np.mgrid[0:ns, 0:ns]
    rows, cols = np.empty((8, ns, ns), dtype=np.int64), np.empty((8, ns, ns), dtype=np.int64)
    for d in range(8):
        a0, ay, ax, b0, by, bx = dihedral(d, ns - 1)
        rows[d], cols[d] = a0 + ay * y + ax * x, b0 + by * y + bx * x
    out = (rows.reshape(-1), cols.reshape(-1))
    for a in out:
        a.flags.writeable = False
    return out


def reference(block: np.ndarray, d: int, o: int, m: int) -> np.ndarray:
    """The same transform in plain numpy on one square (x 3) block, for the tests."""
    side = block.shape[0]
    a0, ay, ax, b0, by, bx = dihedral(d, side - 1)
    y, x = np.mgrid[0:side, 0:side]
    out = block[a0 + ay * y + ax * x, b0 + by * y + bx * x]
    if block.ndim == 3:
        out = out[:, :, list(CHANNEL_ORDERS[o])]
    return out ^ np.uint8(m)
