"""The keyed transform of one 8x8 pixel sub-block as SIMD shuffles: a dihedral map (rotation/flip), a channel
order and a negation, read from one strided image and written to another in a single pass.

Numba has no byte-shuffle instructions, so the transform is emitted as LLVM IR with constant shuffle masks
(`shufflevector`), which LLVM lowers to the target's own shuffles: pshufb/vpermb on x86-64, tbl/zip on
aarch64 (Jetson). No library does a keyed dihedral-plus-channel shuffle of strided blocks, and a C
extension would need a compiler wherever rdec is installed; numba, already a dependency, compiles this.

One function handles all 8 x 6 (map, order) cases behind an LLVM `switch`, for 1 or 3 bytes a pixel:
- maps that keep rows as rows (4 of 8): each output row is one source row, its pixels in order or
  reversed and its channels reordered: one load, one shuffle, one XOR, one store;
- transposing maps: the 8 source rows (in the map's row order) are widened to 32 bits a pixel, transposed
  by three rounds of two-input zips, and narrowed back with the channel order; rows are stored in the
  map's order.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

SUB = 8  # sub-block side, in pixels
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


_ZIP_LO = [0, 8, 1, 9, 2, 10, 3, 11]
_ZIP_HI = [4, 12, 5, 13, 6, 14, 7, 15]


def _case_plan(d: int, o: int, nch: int) -> tuple[bool, list[int], list[int], list[int]]:
    """(transposed, source row loaded as vector i, output row y -> stored vector, byte mask of the final
    shuffle) for map d and channel order o; for rows, vector i is output row i's source row."""
    a0, ay, ax, b0, by, bx = dihedral(d, SUB - 1)
    order = CHANNEL_ORDERS[o] if nch == 3 else (0,)
    if ax == 0:  # rows stay rows: output row y is source row a0 + ay*y, pixel x its pixel b0 + bx*x
        mask = [nch * (b0 + bx * x) + order[c] for x in range(SUB) for c in range(nch)]
        return False, [a0 + ay * y for y in range(SUB)], list(range(SUB)), mask
    # Load L_i = source row a0 + ax*i; the transpose T has T[j][i] = L_i[j], and output pixel (y, x) is
    # source (a0 + ax*x, b0 + by*y) = L_x[b0 + by*y] = T[b0 + by*y][x].
    mask = [4 * x + order[c] for x in range(SUB) for c in range(nch)]
    return True, [a0 + ax * i for i in range(SUB)], [b0 + by * y for y in range(SUB)], mask


def _consts(values: list[int]) -> ir.Constant:
    return ir.Constant(ir.VectorType(ir.IntType(32), len(values)), values)


def _emit_case(builder, src, src_stride, dst, dst_stride, m, d, o, nch):
    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    row = ir.VectorType(i8, SUB * nch)
    transposed, load_rows, store_rows, mask = _case_plan(d, o, nch)

    def at(base, stride, r):  # row r's bytes as a vector pointer
        return builder.bitcast(builder.gep(base, [builder.mul(stride, ir.Constant(i64, r))]), row.as_pointer())

    rows = [builder.load(at(src, src_stride, r), align=1) for r in load_rows]
    if transposed:
        widen = _consts([nch * (b // 4) + (b % 4 if b % 4 < nch else 0) for b in range(4 * SUB)])
        v = [builder.bitcast(builder.shuffle_vector(r, r, widen), ir.VectorType(i32, SUB)) for r in rows]
        for _ in range(3):  # three rounds of zips transpose an 8x8 matrix
            w = []
            for i in range(SUB // 2):
                w += [builder.shuffle_vector(v[i], v[i + 4], _consts(_ZIP_LO)),
                      builder.shuffle_vector(v[i], v[i + 4], _consts(_ZIP_HI))]
            v = w
        rows = [builder.bitcast(t, ir.VectorType(i8, 4 * SUB)) for t in v]
        out = {y: rows[store_rows[y]] for y in range(SUB)}
    else:
        out = {y: rows[y] for y in range(SUB)}
    splat = builder.insert_element(ir.Constant(row, None), m, ir.Constant(i32, 0))
    splat = builder.shuffle_vector(splat, splat, _consts([0] * (SUB * nch)))
    for y in range(SUB):
        r = builder.xor(builder.shuffle_vector(out[y], out[y], _consts(mask)), splat)
        builder.store(r, at(dst, dst_stride, y), align=1)


def _make(nch: int):
    @intrinsic
    def transform(typingctx, src, src_off, src_stride, dst, dst_off, dst_stride, case, m):
        """dst sub-block (at byte dst_off, rows dst_stride bytes apart) = case (d * 6 + o) applied to the
        src sub-block, every byte XOR m. Offsets must keep all 8 rows inside both arrays (the caller checks)."""
        sig = types.void(src, types.int64, types.int64, dst, types.int64, types.int64, types.int64, types.uint8)

        def codegen(context, builder, signature, args):
            a_src, s_off, s_stride, a_dst, d_off, d_stride, k, mm = args
            sp = context.make_array(signature.args[0])(context, builder, a_src).data
            dp = context.make_array(signature.args[3])(context, builder, a_dst).data
            sp, dp = builder.gep(sp, [s_off]), builder.gep(dp, [d_off])
            fn = builder.function
            end = fn.append_basic_block("sub_end")
            sw = builder.switch(k, end)
            for d in range(8):
                for o in range(6 if nch == 3 else 1):
                    bb = fn.append_basic_block(f"sub_{d}_{o}")
                    sw.add_case(ir.Constant(ir.IntType(64), d * 6 + o), bb)
                    builder.position_at_end(bb)
                    _emit_case(builder, sp, s_stride, dp, d_stride, mm, d, o, nch)
                    builder.branch(end)
            builder.position_at_end(end)
            return context.get_dummy_value()

        return sig, codegen

    return transform


transform_rgb = _make(3)
transform_gray = _make(1)


def reference(block: np.ndarray, d: int, o: int, m: int) -> np.ndarray:
    """The same transform in plain numpy on one SUB x SUB (x 3) block, for the tests."""
    a0, ay, ax, b0, by, bx = dihedral(d, SUB - 1)
    y, x = np.mgrid[0:SUB, 0:SUB]
    out = block[a0 + ay * y + ax * x, b0 + by * y + bx * x]
    if block.ndim == 3:
        out = out[:, :, list(CHANNEL_ORDERS[o])]
    return out ^ np.uint8(m)
