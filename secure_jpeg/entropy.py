"""Baseline Huffman scan reader/writer: locate every block's DC code unit and re-emit the scan with DC units moved.

The hot loops (unstuffing, Huffman decoding of every coefficient, bit-exact re-emission with byte
stuffing) are numba-compiled: numba ships wheels for x86-64 and aarch64 (Jetson), and no JPEG library
exposes code-unit positions, so this part is ours. Nothing is ever re-encoded: AC bits, padding bits,
restart markers and fill bytes are copied verbatim, so moving no DC unit reproduces the scan bit for bit.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from rdec.runtime.errors import FormatError

from .markers import Frame, JpegFile, Scan

_ERRORS = {
    -1: "invalid Huffman code",
    -2: "DC difference category out of range",
    -3: "more than 64 coefficients in a block",
    -4: "entropy-coded data runs past its restart interval",
    -5: "restart marker count does not match the image size",
    -6: "bad byte sequence in entropy-coded data",
}


FAST_BITS = 10


@functools.lru_cache(maxsize=32)
def _huffman_lut(counts: bytes, symbols: bytes) -> np.ndarray:
    """16-bit peek -> (code length << 8) | symbol for a canonical Huffman code; 0 marks an invalid code."""
    counts, symbols = np.frombuffer(counts, np.int32), np.frombuffer(symbols, np.int32)
    lut = np.zeros(1 << 16, dtype=np.int32)
    code, k = 0, 0
    for length in range(1, 17):
        for _ in range(int(counts[length - 1])):
            lo = code << (16 - length)
            lut[lo: lo + (1 << (16 - length))] = (length << 8) | int(symbols[k])
            code += 1
            k += 1
        code <<= 1
    lut.flags.writeable = False
    return lut


@functools.lru_cache(maxsize=32)
def _ac_skip_lut(counts: bytes, symbols: bytes) -> np.ndarray:
    """16-bit peek -> bits to skip (code + value bits) | coefficients advanced << 8 (0 = end of block)."""
    lut = _huffman_lut(counts, symbols)
    length, sym = lut >> 8, lut & 0xFF
    run, size = sym >> 4, sym & 15
    # As libjpeg: size 0 with run 15 is ZRL (16 zeros); size 0 with any other run ends the block.
    adv = np.where(size > 0, run + 1, np.where(run == 15, 16, 0))
    skip = np.where(length > 0, (length + size) | (adv << 8), 0).astype(np.int32)
    skip.flags.writeable = False
    return skip


MULTI_BITS = 12


@functools.lru_cache(maxsize=32)
def _ac_multi_lut(counts: bytes, symbols: bytes) -> np.ndarray:
    """MULTI_BITS-bit window -> every whole AC symbol (code + value bits) inside it, up to and including an
    end of block: bits used | coefficients advanced << 4 | end-of-block << 12; 0 if no whole symbol fits.
    Decoding two or three symbols per lookup is what makes the scan reader fast. uint16 entries: 8 KB a
    table, so the two tables of a colour scan fit in L1 cache beside the data."""
    skip = _ac_skip_lut(counts, symbols).astype(np.int64)
    v = np.arange(1 << MULTI_BITS, dtype=np.int64)
    pos = np.zeros_like(v)
    adv = np.zeros_like(v)
    eob = np.zeros(v.size, dtype=bool)
    done = np.zeros(v.size, dtype=bool)
    while not done.all():
        e = skip[((v << (16 - MULTI_BITS)) << pos) & 0xFFFF]  # window from bit `pos`, zeros after it
        total, a = e & 0xFF, e >> 8
        fits = ~done & (e != 0) & (pos + total <= MULTI_BITS)
        pos[fits] += total[fits]
        adv[fits] += a[fits]
        eob |= fits & (a == 0)
        done |= ~fits | eob
    assert pos.max() < 16 and adv.max() < 256  # at most MULTI_BITS one-bit symbols of 16 coefficients each
    multi = np.where(pos > 0, pos | (adv << 4) | (eob.astype(np.int64) << 12), 0).astype(np.uint16)
    multi.flags.writeable = False
    return multi


def _fast_lut(lut16: np.ndarray, code_length: np.ndarray) -> np.ndarray:
    """The first-level table on the top FAST_BITS bits: entries of codes longer than that become 0
    (look up the full 16-bit table then). Small enough to stay in L1 cache."""
    idx = np.arange(1 << FAST_BITS) << (16 - FAST_BITS)
    return np.where(code_length[idx] <= FAST_BITS, lut16[idx], 0).astype(np.uint16)


@dataclass
class ScanLayout:
    n_mcu: int
    slot_comp: np.ndarray  # frame component index of each block slot in an MCU
    slot_dc: np.ndarray  # DC table id of each slot
    slot_ac: np.ndarray  # AC table id of each slot


def scan_layout(frame: Frame, scan: Scan) -> ScanLayout:
    """MCU count and block slots of a scan (interleaved: Hi*Vi blocks per component; else one block)."""
    hmax, vmax = frame.hmax, frame.vmax
    if len(scan.components) == 1:
        ci, td, ta = scan.components[0]
        c = frame.components[ci]
        cw = -(-frame.width * c.h // hmax)
        ch = -(-frame.height * c.v // vmax)
        n_mcu = -(-cw // 8) * -(-ch // 8)
        slots = [(ci, td, ta)]
    else:
        n_mcu = -(-frame.width // (8 * hmax)) * -(-frame.height // (8 * vmax))
        slots = [(ci, td, ta) for ci, td, ta in scan.components
                 for _ in range(frame.components[ci].h * frame.components[ci].v)]
    arr = np.array(slots, dtype=np.int64)
    return ScanLayout(n_mcu, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy())


@numba.njit(cache=True)
def _unstuff(seg):
    """Remove byte stuffing and split at restart markers.

    Returns (data, ivl_start, ivl_end, raw_start, raw_end, n_intervals, status): the unstuffed bytes
    (16 zero bytes of slack at the end), each interval's byte range in them, and its raw byte range in
    `seg` (separators, i.e. RST markers and fill bytes, lie between raw_end[i] and raw_start[i+1]).
    """
    n = seg.size
    out = np.zeros(n + 16, dtype=np.uint8)
    cap = n // 2 + 2
    ivl_start = np.zeros(cap, dtype=np.int64)
    ivl_end = np.zeros(cap, dtype=np.int64)
    raw_start = np.zeros(cap, dtype=np.int64)
    raw_end = np.zeros(cap, dtype=np.int64)
    o = 0
    k = 0
    i = 0
    while i < n:
        b = seg[i]
        if b != 0xFF:
            out[o] = b
            o += 1
            i += 1
            continue
        j = i + 1
        while j < n and seg[j] == 0xFF:
            j += 1
        if j >= n:
            return out, ivl_start, ivl_end, raw_start, raw_end, 0, -6
        m = seg[j]
        if m == 0 and j == i + 1:
            out[o] = 0xFF
            o += 1
            i = j + 1
        elif 0xD0 <= m <= 0xD7:
            ivl_end[k] = o
            raw_end[k] = i
            k += 1
            ivl_start[k] = o
            raw_start[k] = j + 1
            i = j + 1
        else:
            return out, ivl_start, ivl_end, raw_start, raw_end, 0, -6
    ivl_end[k] = o
    raw_end[k] = n
    return out, ivl_start, ivl_end, raw_start, raw_end, k + 1, 0


@numba.njit(cache=True, inline="always")
def _load32(data, b):
    """Four bytes from byte offset b, big-endian (unsigned indices: no wraparound tests)."""
    i = np.uint64(b)
    return (np.int64(data[i]) << 24) | (np.int64(data[i + np.uint64(1)]) << 16) | \
        (np.int64(data[i + np.uint64(2)]) << 8) | np.int64(data[i + np.uint64(3)])


@numba.njit(cache=True, inline="always")
def _load64(data, b):
    """Eight bytes from byte offset b, big-endian, as uint64 (the compiler makes it one load and a swap)."""
    i = np.uint64(b)
    v = np.uint64(0)
    for k in range(8):
        v = (v << np.uint64(8)) | np.uint64(data[i + np.uint64(k)])
    return v


@numba.njit(cache=True, inline="always")
def _refill(data, buf, b, cnt):
    """Top the bit buffer up to 56..63 valid bits without a branch (the refill of F. Giesen's "Reading bits
    in far too many ways", variant 4): `buf` holds the next `cnt` bits at its top, byte b is the first
    not yet in it. Bits below the valid ones are the stream's own next bits, so OR-ing them again is exact."""
    buf |= _load64(data, b) >> np.uint64(cnt)
    return buf, b + ((63 - cnt) >> 3), cnt | 56


@numba.njit(cache=True, inline="always")
def _peek32(data, pos):
    b = pos >> 3
    w = (_load32(data, b) << 8) | np.int64(data[np.uint64(b + 4)])
    return (w >> (8 - (pos & 7))) & 0xFFFFFFFF


@numba.njit(cache=True)
def _analyze(data, ivl_start, ivl_end, n_ivl, n_mcu, restart, slot_comp, slot_dc, slot_ac, dc_luts, ac_luts,
             dc_fast, ac_multi):
    """Decode every block's Huffman codes; record each DC unit's bit position, length and difference value.

    The bit buffer is refilled without a branch and holds at least 56 bits after a refill, enough for two
    AC lookups (at most 12 bits for a multi-symbol one, 31 for a single symbol), so the loop refills once
    per two lookups and its only data-dependent branches are the block's end and the rare long codes.
    Table and buffer indices are unsigned so numba skips its negative-index test on every lookup.
    """
    u = np.uint64
    bpm = slot_comp.size
    nb = n_mcu * bpm
    blk_pos = np.zeros(nb + 1, dtype=np.int64)
    blk_len = np.zeros(nb, dtype=np.int64)
    blk_diff = np.zeros(nb, dtype=np.int64)
    blk_comp = np.zeros(nb, dtype=np.int64)
    blk_ivl = np.zeros(nb, dtype=np.int64)
    per = restart if restart > 0 else n_mcu
    expected = (n_mcu + per - 1) // per
    if n_ivl != expected:
        return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, -5, 0
    k = 0
    for iv in range(n_ivl):
        # bit buffer: the next `cnt` bits at the top of `buf`; byte `b` is the first not yet in it
        b = ivl_start[iv]
        buf = u(0)
        cnt = 0
        end = ivl_end[iv] * 8
        limit = ivl_end[iv] + 8  # legal decoding never loads past this (the buffer has 16 bytes of slack)
        m1 = min(n_mcu, (iv + 1) * per)
        for m in range(iv * per, m1):
            for j in range(bpm):
                if b > limit:
                    return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, -4, k
                buf, b, cnt = _refill(data, buf, b, cnt)
                p16 = buf >> u(48)
                e = np.int64(dc_fast[u(slot_dc[j]), p16 >> u(16 - FAST_BITS)])
                if e == 0:
                    e = dc_luts[u(slot_dc[j]), p16]
                if e == 0:
                    return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, -1, k
                s = e & 0xFF
                if s > 11:
                    return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, -2, k
                start = b * 8 - cnt
                n = e >> 8
                buf <<= u(n)
                cnt -= n
                diff = 0
                if s > 0:
                    v = np.int64(buf >> u(64 - s))
                    diff = v if v >= (1 << (s - 1)) else v - (1 << s) + 1
                    buf <<= u(s)
                    cnt -= s
                blk_pos[k] = start
                blk_len[k] = n + s
                blk_diff[k] = diff
                blk_comp[k] = slot_comp[j]
                blk_ivl[k] = iv
                tab = u(slot_ac[j])
                c = 1
                while c < 64:
                    if b > limit:
                        return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, -4, k
                    buf, b, cnt = _refill(data, buf, b, cnt)
                    e = np.int64(ac_multi[tab, buf >> u(64 - MULTI_BITS)])
                    if e != 0 and c + ((e >> 4) & 0xFF) < 64:
                        buf <<= u(e & 0xF)
                        cnt -= e & 0xF
                        c += (e >> 4) & 0xFF
                        if e >> 12:
                            break
                        e = np.int64(ac_multi[tab, buf >> u(64 - MULTI_BITS)])
                        if e != 0 and c + ((e >> 4) & 0xFF) < 64:
                            buf <<= u(e & 0xF)
                            cnt -= e & 0xF
                            c += (e >> 4) & 0xFF
                            if e >> 12:
                                break
                            continue
                    # one symbol from the full table: a long code, or the block's last coefficients
                    e = ac_luts[tab, buf >> u(48)]
                    if e == 0:
                        return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, -1, k
                    buf <<= u(e & 0xFF)
                    cnt -= e & 0xFF
                    if e >> 8 == 0:
                        break
                    c += e >> 8
                if c > 64:
                    return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, -3, k
                if b * 8 - cnt > end:
                    return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, -4, k
                k += 1
    blk_pos[nb] = ivl_end[n_ivl - 1] * 8
    return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, 0, k


@numba.njit(cache=True, inline="always")
def _put_bytes(out, o, acc, nacc, whole):
    """Emit the top bytes of the bit buffer (`acc` holds `nacc` bits), 0xFF followed by a stuffed 0x00:
    four at a time while at least 32 bits are waiting (one test finds a 0xFF among them), then, with
    whole=True, every remaining whole byte. Returns (o, nacc)."""
    u = np.uint64
    while nacc >= 32:
        w = (acc >> (nacc - 32)) & 0xFFFFFFFF
        x = w ^ 0xFFFFFFFF  # a 0xFF byte of w is a zero byte of x
        if ((x - 0x01010101) & ~x & 0x80808080) == 0:
            out[o] = (w >> 24) & 0xFF
            out[o + u(1)] = (w >> 16) & 0xFF
            out[o + u(2)] = (w >> 8) & 0xFF
            out[o + u(3)] = w & 0xFF
            o += u(4)
            nacc -= 32
        else:
            break
    floor = 8 if whole else 32  # without `whole`, just enough that the next 32-bit chunk fits
    while nacc >= floor:
        nacc -= 8
        byte = (acc >> nacc) & 0xFF
        out[o] = byte
        o += u(1)
        if byte == 0xFF:
            out[o] = 0
            o += u(1)
    return o, nacc


@numba.njit(cache=True)
def _rewrite(data, seg, blk_pos, blk_len, blk_ivl, src, ivl_end, raw_start, raw_end, n_ivl):
    """Re-emit the scan: block k gets the DC unit of block src[k] and keeps its own AC bits; re-stuff."""
    u = np.uint64  # unsigned output index: no wraparound test per byte
    out = np.empty(2 * seg.size + 16, dtype=np.uint8)
    o = u(0)
    acc = np.int64(0)
    nacc = 0  # bits waiting in acc (fewer than 32 between copies, so a 32-bit chunk always fits in 63 bits)
    nb = blk_len.size
    k = 0
    for iv in range(n_ivl):
        while k < nb and blk_ivl[k] == iv:
            s = src[k]
            # the DC unit of block s, then block k's AC bits up to the next block (or the interval's end)
            nxt = blk_pos[k + 1] if (k + 1 < nb and blk_ivl[k + 1] == iv) else ivl_end[iv] * 8
            for part in range(2):
                if part == 0:
                    p, n = blk_pos[s], blk_len[s]
                else:
                    p, n = blk_pos[k] + blk_len[k], nxt - blk_pos[k] - blk_len[k]
                while n > 0:
                    c = 32 if n > 32 else n
                    acc = ((acc & ((np.int64(1) << nacc) - 1)) << c) | (_peek32(data, p) >> (32 - c))
                    nacc += c
                    p += c
                    n -= c
                    o, nacc = _put_bytes(out, o, acc, nacc, False)
            k += 1
        o, nacc = _put_bytes(out, o, acc, nacc, True)  # intervals end on a byte boundary
        # separator (RST marker and any fill bytes) copied verbatim
        if iv + 1 < n_ivl:
            for q in range(raw_end[iv], raw_start[iv + 1]):
                out[o] = seg[q]
                o += u(1)
    return out[:np.int64(o)], nacc


@dataclass
class ScanUnits:
    """Where every block's DC unit lies in one scan, with what is needed to rewrite the scan."""

    seg: np.ndarray
    data: np.ndarray
    ivl_end: np.ndarray
    raw_start: np.ndarray
    raw_end: np.ndarray
    n_ivl: int
    pos: np.ndarray  # bit position of each block's DC unit (one extra entry: the scan's end)
    length: np.ndarray  # bits in each DC unit (Huffman code + value bits)
    diff: np.ndarray  # DC difference of each block
    comp: np.ndarray  # frame component index of each block
    interval: np.ndarray  # restart interval of each block


def _stack(tables: dict, size: int, dtype=np.int32) -> np.ndarray:
    out = np.zeros((4, size), dtype=dtype)
    for i, t in tables.items():
        out[i] = t
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _scan_luts(dc: tuple, ac: tuple) -> tuple[np.ndarray, ...]:
    """The decoding tables of a scan, stacked by table id; cached, as every frame of a stream has the same."""
    dc_full = {i: _huffman_lut(counts, symbols) for i, counts, symbols in dc}
    return (_stack(dc_full, 1 << 16),
            _stack({i: _ac_skip_lut(counts, symbols) for i, counts, symbols in ac}, 1 << 16),
            _stack({i: _fast_lut(t, t >> 8) for i, t in dc_full.items()}, 1 << FAST_BITS, np.uint16),
            _stack({i: _ac_multi_lut(counts, symbols) for i, counts, symbols in ac}, 1 << MULTI_BITS, np.uint16))


def analyze_scan(jpeg: JpegFile, scan: Scan) -> ScanUnits:
    """Decode a scan's Huffman codes and locate every DC unit; FormatError if the data is corrupt."""
    layout = scan_layout(jpeg.frame, scan)
    seg = np.frombuffer(jpeg.data, dtype=np.uint8, count=scan.data_end - scan.data_start, offset=scan.data_start)
    if layout.n_mcu * layout.slot_comp.size > 4 * seg.size + 64:  # every block takes at least 2 bits
        raise FormatError("corrupted JPEG: the image size does not match its entropy-coded data")
    data, ivl_start, ivl_end, raw_start, raw_end, n_ivl, status = _unstuff(seg)
    if status:
        raise FormatError(f"corrupted JPEG: {_ERRORS[status]}")
    dc_luts, ac_luts, dc_fast, ac_multi = _scan_luts(
        tuple((i, t.counts.tobytes(), t.symbols.tobytes()) for i, t in sorted(scan.dc_tables.items())),
        tuple((i, t.counts.tobytes(), t.symbols.tobytes()) for i, t in sorted(scan.ac_tables.items())))
    pos, length, diff, comp, ivl, status, k = _analyze(
        data, ivl_start, ivl_end, n_ivl, layout.n_mcu, scan.restart_interval,
        layout.slot_comp, layout.slot_dc, layout.slot_ac, dc_luts, ac_luts, dc_fast, ac_multi)
    if status:
        raise FormatError(f"corrupted JPEG: {_ERRORS[status]} (block {k})")
    return ScanUnits(seg, data, ivl_end[:n_ivl], raw_start[:n_ivl], raw_end[:n_ivl], n_ivl,
                     pos, length, diff, comp, ivl)


def rewrite_scan(units: ScanUnits, src: np.ndarray) -> bytes:
    """The scan's entropy-coded bytes with block k carrying the DC unit of block src[k]."""
    out, left = _rewrite(units.data, units.seg, units.pos, units.length, units.interval, src,
                         units.ivl_end, units.raw_start, units.raw_end, units.n_ivl)
    if left:
        raise FormatError("internal error: a restart interval changed its bit length")
    return out.tobytes()
