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

from .markers import Frame, JpegFile, Scan, ff_offsets

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


MULTI_BITS = 13  # 5 % faster than 12 on a 1080p frame, 14 no better (its tables leave L1 cache)
LOOKUPS_PER_REFILL = 56 // MULTI_BITS  # a refill leaves at least 56 bits: four lookups (1 % faster than two)


@functools.lru_cache(maxsize=32)
def _ac_multi_lut(counts: bytes, symbols: bytes) -> np.ndarray:
    """MULTI_BITS-bit window -> every whole AC symbol (code + value bits) inside it, up to and including an
    end of block: bits used | coefficients advanced << 4 | end-of-block << 12; 0 if no whole symbol fits.
    Decoding two or three symbols per lookup is what makes the scan reader fast. uint16 entries: 16 KB a
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


@numba.njit(cache=True, inline="always")
def _copy(dst, d, src, s, n):
    """dst[d:d + n] = src[s:s + n] as a plain loop on unsigned indices, which the compiler vectorizes:
    numba's slice assignment copies 12x slower (80 against 7 us for a 1080p scan)."""
    du, su = np.uint64(d), np.uint64(s)
    for t in range(np.uint64(n)):
        dst[du + t] = src[su + t]


@numba.njit(cache=True)
def _unstuff(seg, ff):
    """Remove byte stuffing and split at restart markers; `ff` lists the positions of the 0xFF bytes, so
    the bytes between them move as whole slices.

    Returns (data, ivl_start, ivl_end, raw_start, raw_end, n_intervals, status): the unstuffed bytes
    (16 zero bytes of slack at the end), each interval's byte range in them, and its raw byte range in
    `seg` (separators, i.e. RST markers and fill bytes, lie between raw_end[i] and raw_start[i+1]).
    """
    n = seg.size
    out = np.empty(n + 16, dtype=np.uint8)
    cap = ff.size + 2  # every restart marker starts with a 0xFF
    ivl_start = np.zeros(cap, dtype=np.int64)
    ivl_end = np.zeros(cap, dtype=np.int64)
    raw_start = np.zeros(cap, dtype=np.int64)
    raw_end = np.zeros(cap, dtype=np.int64)
    o = 0
    k = 0
    i = 0
    for t in range(ff.size):
        f = ff[t]
        if f < i:  # a fill byte already passed
            continue
        _copy(out, o, seg, i, f - i)
        o += f - i
        j = f + 1
        while j < n and seg[j] == 0xFF:
            j += 1
        if j >= n:
            return out, ivl_start, ivl_end, raw_start, raw_end, 0, -6
        m = seg[j]
        if m == 0 and j == f + 1:
            out[o] = 0xFF
            o += 1
            i = j + 1
        elif 0xD0 <= m <= 0xD7:
            ivl_end[k] = o
            raw_end[k] = f
            k += 1
            ivl_start[k] = o
            raw_start[k] = j + 1
            i = j + 1
        else:
            return out, ivl_start, ivl_end, raw_start, raw_end, 0, -6
    _copy(out, o, seg, i, n - i)
    o += n - i
    out[o:] = 0
    ivl_end[k] = o
    raw_end[k] = n
    return out, ivl_start, ivl_end, raw_start, raw_end, k + 1, 0


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
def _multi_symbols(ac_multi, tab, buf, cnt, c):
    """One multi-symbol AC lookup (at most MULTI_BITS bits): (1, ...) decoded, (2, ...) decoded through the
    end of block, (0, ...) nothing taken (a long code, or the block's last coefficients: use the full table)."""
    e = np.int64(ac_multi[tab, buf >> np.uint64(64 - MULTI_BITS)])
    if e == 0 or c + ((e >> 4) & 0xFF) >= 64:
        return 0, buf, cnt, c
    return 1 + (e >> 12), buf << np.uint64(e & 0xF), cnt - (e & 0xF), c + ((e >> 4) & 0xFF)


@numba.njit(cache=True)
def _analyze(data, ivl_start, ivl_end, n_ivl, n_mcu, restart, slot_comp, slot_dc, slot_ac, dc_luts, ac_luts,
             dc_fast, ac_multi):
    """Decode every block's Huffman codes; record each DC unit's bit position, length and difference value.

    The bit buffer is refilled without a branch and holds at least 56 bits after a refill, enough for
    LOOKUPS_PER_REFILL multi-symbol AC lookups (at most MULTI_BITS bits each), so the loop refills once per
    four lookups (the rare single-symbol lookup, up to 26 bits, refills first) and its only data-dependent
    branches are the block's end and the rare long codes. The DC value bits are read without a branch
    (zero value bits shift in nothing), as DC signs are random.
    Table and buffer indices are unsigned so numba skips its negative-index test on every lookup.
    """
    u = np.uint64
    bpm = slot_comp.size
    nb = n_mcu * bpm
    # narrow types (a DC unit is at most 27 bits, its difference within +-2047): the arrays of a frame stay in
    # cache for the runs and the rewrite (1.9 MB as int64 against 0.8 MB a 1080p frame)
    blk_pos = np.empty(nb + 1, dtype=np.int64)
    blk_len = np.empty(nb, dtype=np.uint8)
    blk_diff = np.empty(nb, dtype=np.int16)
    blk_comp = np.empty(nb, dtype=np.uint8)
    blk_ivl = np.empty(nb, dtype=np.int32)
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
                # branch-free (DC signs are random): s = 0 reads no bits and gives 0
                v = np.int64((buf >> u(1)) >> u(63 - s))
                diff = v - (((1 << s) - 1) if v < ((1 << s) >> 1) else 0)
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
                    for _ in range(LOOKUPS_PER_REFILL):
                        got, buf, cnt, c = _multi_symbols(ac_multi, tab, buf, cnt, c)
                        if got != 1:
                            break
                    if got == 1:
                        continue
                    if got == 2:
                        break
                    # one symbol from the full table (a long code, or the block's last coefficients),
                    # after a refill: four lookups may have left only 4 bits
                    if b > limit:
                        return blk_pos, blk_len, blk_diff, blk_comp, blk_ivl, -4, k
                    buf, b, cnt = _refill(data, buf, b, cnt)
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
def _store64(out, o, v):
    """Eight bytes of v at byte offset o, big-endian (the compiler makes it a swap and one store)."""
    for k in range(8):
        out[o + np.uint64(k)] = np.uint8((v >> np.uint64(56 - 8 * k)) & np.uint64(0xFF))


@numba.njit(cache=True)
def _rewrite(data, blk_pos, blk_len, blk_ivl, src, ivl_end, n_ivl):
    """Re-emit the unstuffed scan: block k gets the DC unit of block src[k] and keeps its own AC bits.

    Bits move in chunks of up to 56 through a 64-bit buffer that is flushed without a branch (all eight
    bytes stored, the whole ones kept). Every restart interval keeps its bit length, so it lands on the
    same bytes as before; returns the bytes and -1 if an interval's length changed.
    """
    u = np.uint64
    out = np.empty(data.size + 16, dtype=np.uint8)  # every byte up to the scan's end is stored (8 at a time)
    o = u(0)
    acc = u(0)  # pending bits at the top
    nacc = 0
    nb = blk_len.size
    k = 0
    for iv in range(n_ivl):
        while k < nb and blk_ivl[k] == iv:
            # the DC unit of block src[k], then block k's AC bits up to the next block (or the interval's end)
            nxt = blk_pos[k + 1] if (k + 1 < nb and blk_ivl[k + 1] == iv) else ivl_end[iv] * 8
            for part in range(2):
                if part == 0:
                    p, n = blk_pos[src[k]], blk_len[src[k]]
                else:
                    p, n = blk_pos[k] + blk_len[k], nxt - blk_pos[k] - blk_len[k]
                while n > 0:
                    c = min(n, 56)
                    v = (_load64(data, p >> 3) << u(p & 7)) >> u(64 - c) << u(64 - c)  # the top c bits
                    _store64(out, o, acc)
                    o += u(nacc >> 3)
                    acc <<= u(nacc & ~7)
                    nacc &= 7
                    acc |= v >> u(nacc)
                    nacc += c
                    p += c
                    n -= c
            k += 1
        _store64(out, o, acc)
        o += u(nacc >> 3)
        if nacc & 7 or np.int64(o) != ivl_end[iv]:
            return out, -1
        acc = u(0)
        nacc = 0
    return out, 0


@numba.njit(cache=True)
def _stuff(plain, ff, seg, ivl_end, raw_start, raw_end, n_ivl):
    """The entropy-coded bytes: `plain` with a 0x00 after every 0xFF (at positions `ff`), and between
    intervals the original separators (RST markers and fill bytes), copied verbatim."""
    total = ivl_end[n_ivl - 1]
    out = np.empty(total + ff.size + (raw_start[n_ivl - 1] - raw_end[0] if n_ivl > 1 else 0), dtype=np.uint8)
    o = 0
    i = 0
    t = 0
    for iv in range(n_ivl):
        e = ivl_end[iv]
        while t < ff.size and ff[t] < e:
            f = ff[t] + 1
            _copy(out, o, plain, i, f - i)
            o += f - i
            out[o] = 0
            o += 1
            i = f
            t += 1
        _copy(out, o, plain, i, e - i)
        o += e - i
        i = e
        if iv + 1 < n_ivl:
            sep = raw_start[iv + 1] - raw_end[iv]
            _copy(out, o, seg, raw_end[iv], sep)
            o += sep
    return out[:o]


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
    blocks_per_mcu: int  # every MCU has these block slots, in the same order


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
    data, ivl_start, ivl_end, raw_start, raw_end, n_ivl, status = _unstuff(seg, scan.ff)
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
                     pos, length, diff, comp, ivl, layout.slot_comp.size)


def rewrite_scan(units: ScanUnits, src: np.ndarray) -> bytes:
    """The scan's entropy-coded bytes with block k carrying the DC unit of block src[k]."""
    plain, status = _rewrite(units.data, units.pos, units.length, units.interval, src, units.ivl_end, units.n_ivl)
    if status:
        raise FormatError("internal error: a restart interval changed its bit length")
    plain = plain[:units.ivl_end[-1]]
    return _stuff(plain, ff_offsets(plain, plain.size), units.seg, units.ivl_end, units.raw_start, units.raw_end,
                  units.n_ivl).tobytes()
