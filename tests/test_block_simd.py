"""The SIMD sub-block transform against a plain numpy version, for every map, channel order and negation."""
import numba
import numpy as np
import pytest

from rdec.secure_jpeg import block_simd


def _applier(nch: int, side: int):
    """A compiled call of the transform for nch bytes a pixel and side x side sub-blocks (both constants)."""
    @numba.njit
    def apply(src, s0, s_stride, dst, d0, d_stride, case, m):
        block_simd.transform(block_simd.ptr(src), s0, s_stride, block_simd.ptr(dst), d0, d_stride, case, m, nch,
                             side)
    return apply


@pytest.mark.parametrize("nch,side", [(3, 8), (1, 8), (3, 16), (1, 16)])
def test_every_case_matches_numpy_and_writes_only_its_block(nch, side):
    rng = np.random.default_rng(nch + side)
    shape = (side + 12, side + 22) + ((3,) if nch == 3 else ())
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    out_shape = (side + 3, side + 5) + ((3,) if nch == 3 else ())
    apply = _applier(nch, side)
    iw, ow = shape[1], out_shape[1]
    for d in range(8):
        for o in range(6 if nch == 3 else 1):
            for m in (0, 255, 0x5A):
                out = np.zeros(out_shape, dtype=np.uint8)
                apply(img.reshape(-1), (3 * iw + 5) * nch, iw * nch, out.reshape(-1), (2 * ow + 3) * nch, ow * nch,
                      d * 6 + o, np.uint8(m))
                expected = block_simd.reference(img[3:3 + side, 5:5 + side], d, o, m)
                assert np.array_equal(out[2:2 + side, 3:3 + side], expected), (d, o, m)
                out[2:2 + side, 3:3 + side] = 0
                assert not out.any()  # nothing written outside the block


def test_reference_maps_are_the_eight_dihedral_symmetries():
    block = np.arange(64, dtype=np.uint8).reshape(8, 8)
    images = {block_simd.reference(block, d, 0, 0).tobytes() for d in range(8)}
    expected = {np.rot90(f, r).tobytes() for f in (block, block[:, ::-1]) for r in range(4)}
    assert images == expected


@numba.njit
def _apply_raw(src, dst):
    block_simd.transform(src, 0, 24, dst, 0, 24, 0, np.uint8(0), 3, 8)


@numba.njit
def _apply_odd_side(src, dst):
    block_simd.transform(block_simd.ptr(src), 0, 24, block_simd.ptr(dst), 0, 24, 0, np.uint8(0), 3, 4)


def test_only_uint8_pointers_of_flat_contiguous_arrays_type_check():
    good = np.zeros(8 * 24, dtype=np.uint8)
    apply = _applier(3, 8)
    for bad in (np.zeros(8 * 24, dtype=np.int64), np.zeros(2 * 8 * 24, dtype=np.uint8)[::2],
                np.zeros((8, 24), dtype=np.uint8)):
        with pytest.raises(numba.core.errors.TypingError):
            apply(bad, 0, 24, good, 0, 24, 0, np.uint8(0))
    with pytest.raises(numba.core.errors.TypingError):  # an array itself, not its pointer
        _apply_raw(good, good)
    with pytest.raises(numba.core.errors.TypingError):  # sub-blocks are 8 or 16 pixels a side
        _apply_odd_side(good, good)


def _standalone_ir(nch: int, side: int = 8) -> str:
    """The transform as a plain LLVM function, without numba, to compile for other CPUs."""
    from llvmlite import ir

    i8, i64 = ir.IntType(8), ir.IntType(64)
    mod = ir.Module("sub_block")
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i8.as_pointer(), i64, i8.as_pointer(), i64, i64, i8]),
                     "sub_block")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    block_simd.emit_transform(builder, *fn.args, nch, side)
    builder.ret_void()
    return str(mod)


@pytest.mark.parametrize("nch,side", [(3, 8), (1, 8), (3, 16), (1, 16)])
def test_transform_compiles_to_neon_shuffles_for_jetson(nch, side):
    """Jetson Orin's Cortex-A78AE: the masks become NEON table lookups, not per-byte moves."""
    import re

    import llvmlite.binding as llvm

    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    try:
        target = llvm.Target.from_triple("aarch64-unknown-linux-gnu")
    except RuntimeError as e:
        pytest.skip(f"this llvmlite has no AArch64 target: {e}")
    machine = target.create_target_machine(cpu="cortex-a78ae", opt=3)
    module = llvm.parse_assembly(_standalone_ir(nch, side))
    module.triple, module.data_layout = "aarch64-unknown-linux-gnu", str(machine.target_data)
    module.verify()
    ops = re.findall(r"^\s+([a-z][a-z0-9.]*)\s", machine.emit_assembly(module), re.M)
    cases = 48 if nch == 3 else 8
    assert ops.count("tbl") >= cases  # at least one table shuffle per case
    per_8x8 = (side // 8) ** 2  # 8x8 sub-blocks in one of this side
    assert len(ops) < 150 * per_8x8 * cases  # about 90-100 instructions an 8x8 sub-block (a byte loop: ~400)


def test_stage1_kernels_load_from_numba_cache_in_a_new_process():
    """The per-block-size kernels are closures; one over anything but plain ints would be compiled again in
    every process (17 s before a stream's first frame). The second of two processes must find all of them in
    numba's cache."""
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from rdec.secure_jpeg import block_simd, ecea\n"
        "img = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)\n"
        "ecea.decrypt(ecea.encrypt(img, b'k' * 32, block=16), b'k' * 32)\n"
        "print(sum(sum(f.stats.cache_misses.values()) for f in block_simd._kernels(16, 3)))\n"
    )
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert runs[1].stdout.split()[-1] == "0", runs[1].stdout
