"""Baseline JPEG marker-level reader: segments, frame header, Huffman tables, restart interval, scans.

Only what ECEA needs to walk the entropy-coded data of sequential Huffman JPEGs (SOF0/SOF1, 8-bit).
Progressive, arithmetic-coded, lossless, hierarchical and 12-bit files are refused with UnsupportedError;
anything malformed or truncated raises FormatError. Bytes outside the entropy-coded segments are never
rewritten, so a file's headers survive encryption and decryption untouched.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numba
import numpy as np

from rdec.runtime.errors import FormatError, UnsupportedError

SOI, EOI, SOS, DHT, DQT, DRI, DNL, DAC, COM = 0xD8, 0xD9, 0xDA, 0xC4, 0xDB, 0xDD, 0xDC, 0xCC, 0xFE
SOF_SEQUENTIAL = (0xC0, 0xC1)
_UNSUPPORTED_SOF = {
    0xC2: "progressive JPEG", 0xC3: "lossless JPEG", 0xC5: "hierarchical JPEG", 0xC6: "hierarchical JPEG",
    0xC7: "hierarchical JPEG", 0xC9: "arithmetic-coded JPEG", 0xCA: "arithmetic-coded progressive JPEG",
    0xCB: "arithmetic-coded lossless JPEG", 0xCD: "arithmetic-coded JPEG", 0xCE: "arithmetic-coded JPEG",
    0xCF: "arithmetic-coded JPEG", 0xDE: "hierarchical JPEG", 0xDF: "hierarchical JPEG",
    DAC: "arithmetic-coded JPEG", DNL: "JPEG with a DNL marker",
}


@dataclass
class Component:
    ident: int
    h: int
    v: int
    tq: int


@dataclass
class Frame:
    height: int
    width: int
    components: list[Component]

    @property
    def hmax(self) -> int:
        return max(c.h for c in self.components)

    @property
    def vmax(self) -> int:
        return max(c.v for c in self.components)


@dataclass
class HuffmanTable:
    counts: np.ndarray  # BITS: number of codes of each length 1..16
    symbols: np.ndarray  # HUFFVAL in code order


@dataclass
class Scan:
    """One SOS: its components (frame indices with DC/AC table ids) and where its entropy data lies."""

    components: list[tuple[int, int, int]]  # (frame component index, DC table id, AC table id)
    data_start: int  # first byte of entropy-coded data (after the SOS header)
    data_end: int  # the 0xFF that starts the marker ending the scan (RSTs are inside)
    restart_interval: int
    dc_tables: dict[int, HuffmanTable]
    ac_tables: dict[int, HuffmanTable]
    # offsets of the 0xFF bytes of the entropy-coded data, from data_start: found while looking for its end,
    # and what the scan reader unstuffs by
    ff: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class JpegFile:
    data: bytes
    frame: Frame
    scans: list[Scan]
    segments: list[tuple[int, int, int]] = field(default_factory=list)  # (marker, offset of 0xFF, total length)


def _u16(data: bytes, pos: int) -> int:
    if pos + 2 > len(data):
        raise FormatError("truncated JPEG (header cut off)")
    return (data[pos] << 8) | data[pos + 1]


def _parse_sof(body: bytes) -> Frame:
    if len(body) < 6:
        raise FormatError("corrupted JPEG: short frame header")
    precision, height, width, n = body[0], (body[1] << 8) | body[2], (body[3] << 8) | body[4], body[5]
    if precision != 8:
        raise UnsupportedError(f"{precision}-bit JPEG is not supported (only 8-bit baseline)")
    if height == 0:
        raise UnsupportedError("JPEG with the height given by a DNL marker is not supported")
    if width == 0 or n not in (1, 3, 4) or len(body) != 6 + 3 * n:
        raise FormatError("corrupted JPEG: bad frame header")
    comps = []
    for i in range(n):
        ident, hv, tq = body[6 + 3 * i: 9 + 3 * i]
        h, v = hv >> 4, hv & 15
        if not (1 <= h <= 4 and 1 <= v <= 4) or tq > 3:
            raise FormatError("corrupted JPEG: bad component sampling factors")
        comps.append(Component(ident, h, v, tq))
    if sum(c.h * c.v for c in comps) > 10:
        raise FormatError("corrupted JPEG: more than 10 blocks per MCU")
    return Frame(height, width, comps)


def _parse_dht(body: bytes, dc: dict, ac: dict) -> None:
    """Define the tables of one DHT segment (FormatError if malformed)."""
    for tc, th, table in _dht_tables(body):
        (dc if tc == 0 else ac)[th] = table


@functools.lru_cache(maxsize=64)
def _dht_tables(body: bytes) -> tuple[tuple[int, int, HuffmanTable], ...]:
    """The tables of a DHT segment, cached by its bytes: every frame of a stream has the same ones (their
    arrays are read-only, as they are shared)."""
    tables, pos = [], 0
    while pos < len(body):
        if pos + 17 > len(body):
            raise FormatError("corrupted JPEG: short Huffman table")
        tc, th = body[pos] >> 4, body[pos] & 15
        if tc > 1 or th > 3:
            raise FormatError("corrupted JPEG: bad Huffman table id")
        counts = np.frombuffer(body, dtype=np.uint8, count=16, offset=pos + 1).astype(np.int32)
        total = int(counts.sum())
        if total == 0 or total > 256 or pos + 17 + total > len(body):
            raise FormatError("corrupted JPEG: bad Huffman table size")
        symbols = np.frombuffer(body, dtype=np.uint8, count=total, offset=pos + 17).astype(np.int32)
        # Kraft check: a canonical code with these counts must exist.
        room = 1
        for n in counts:
            room = 2 * room - int(n)
            if room < 0:
                raise FormatError("corrupted JPEG: Huffman table is not a prefix code")
        counts.flags.writeable = symbols.flags.writeable = False
        tables.append((tc, th, HuffmanTable(counts, symbols)))
        pos += 17 + total
    return tuple(tables)


@numba.njit(cache=True, inline="always")
def _has_ff(arr, i):
    """Whether any of the eight bytes from offset i is 0xFF (a zero byte of their complement: exact)."""
    u = np.uint64(i)  # unsigned indices: no negative-index test, so the compiler makes one 64-bit load
    x = np.uint64(0)
    for k in range(8):
        x |= np.uint64(arr[u + np.uint64(k)]) << np.uint64(8 * k)
    x = ~x
    return (x - np.uint64(0x0101010101010101)) & ~x & np.uint64(0x8080808080808080) != 0


@numba.njit(cache=True, inline="always")
def _walk_ff(arr, stop, ff, at_marker):
    """Walk arr[:stop] eight bytes at a time (scan data holds a 0xFF in about 250 bytes): count its 0xFF
    bytes and write the offsets of as many as ff has room for; with at_marker, stop at the first 0xFF that
    starts a marker other than a stuffed zero, an RST marker or a fill byte. Returns (count, where it stopped)."""
    n = 0
    f = 0
    while f < stop:
        if f + 8 <= stop and not _has_ff(arr, f):
            f += 8
            continue
        if arr[f] == 0xFF:
            if at_marker:
                nxt = arr[f + 1]
                if nxt != 0x00 and nxt != 0xFF and not (0xD0 <= nxt <= 0xD7):
                    return n, f
            if n < ff.size:
                ff[n] = f
            n += 1
        f += 1
    return n, stop


@numba.njit(cache=True)
def ff_offsets(arr, stop):
    """The offsets of the 0xFF bytes in arr[:stop]: one pass with room for stop / 32 + 256 of them, a second
    with room for all if there are more."""
    ff = np.empty(stop // 32 + 256, dtype=np.int64)
    n, _ = _walk_ff(arr, stop, ff, False)
    if n > ff.size:
        ff = np.empty(n, dtype=np.int64)
        _walk_ff(arr, stop, ff, False)
    return ff[:n]


@numba.njit(cache=True)
def _scan_ff(arr):
    """The bytes after an SOS header: (end, ff), end = offset of the first marker that is neither a stuffed
    zero, an RST marker nor a fill byte (back at its first fill byte), -1 if none; ff = the offsets of the
    0xFF bytes before it. One pass records them on the way to the end; if there are more than it has room
    for, they are counted and recorded afresh."""
    ff = np.empty(arr.size // 32 + 256, dtype=np.int64)
    n, stop = _walk_ff(arr, arr.size - 1, ff, True)
    ff = ff_offsets(arr, stop) if n > ff.size else ff[:n]
    if stop == arr.size - 1:
        return -1, ff
    while n > 0 and ff[n - 1] == stop - 1:  # fill bytes before the marker belong to it
        n -= 1
        stop -= 1
    return stop, ff[:n]


def _find_scan_end(data: bytes, pos: int) -> tuple[int, np.ndarray]:
    """Offset of the 0xFF (first of any fill bytes) of the first non-RST marker at or after pos, and the
    offsets (from pos) of the 0xFF bytes before it."""
    end, ff = _scan_ff(np.frombuffer(data, dtype=np.uint8, offset=min(pos, len(data))))
    if end < 0:
        raise FormatError("truncated JPEG (entropy-coded data not terminated)")
    return pos + int(end), ff


def parse(data: bytes) -> JpegFile:
    """Walk a JPEG's markers; raise FormatError/UnsupportedError on anything ECEA cannot process exactly."""
    data = bytes(data)
    if len(data) < 4 or data[0] != 0xFF or data[1] != SOI:
        raise FormatError("not a JPEG file (no SOI marker)")
    pos, frame, scans, segments = 2, None, [], []
    dc_tables: dict[int, HuffmanTable] = {}
    ac_tables: dict[int, HuffmanTable] = {}
    restart = 0
    while True:
        if pos >= len(data):
            raise FormatError("truncated JPEG (no EOI marker)")
        if data[pos] != 0xFF:
            raise FormatError(f"corrupted JPEG: expected a marker at byte {pos}")
        start = pos
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos >= len(data):
            raise FormatError("truncated JPEG (no EOI marker)")
        marker = data[pos]
        pos += 1
        if marker == EOI:
            segments.append((marker, start, pos - start))
            break
        if marker in _UNSUPPORTED_SOF:
            raise UnsupportedError(f"{_UNSUPPORTED_SOF[marker]} is not supported (only baseline sequential)")
        if marker == SOI or 0xD0 <= marker <= 0xD7 or marker in (0x00, 0x01):
            raise FormatError(f"corrupted JPEG: unexpected marker 0xFF{marker:02X} at byte {start}")
        length = _u16(data, pos)
        if length < 2 or pos + length > len(data):
            raise FormatError("truncated JPEG (segment runs past the end of the file)")
        body = data[pos + 2: pos + length]
        pos += length
        segments.append((marker, start, pos - start))
        if marker in SOF_SEQUENTIAL:
            if frame is not None:
                raise FormatError("corrupted JPEG: two frame headers")
            frame = _parse_sof(body)
        elif marker == DHT:
            _parse_dht(body, dc_tables, ac_tables)
        elif marker == DRI:
            if len(body) != 2:
                raise FormatError("corrupted JPEG: bad DRI segment")
            restart = (body[0] << 8) | body[1]
        elif marker == SOS:
            if frame is None:
                raise FormatError("corrupted JPEG: scan before frame header")
            scan = _parse_sos(body, frame, dc_tables, ac_tables, restart)
            end, scan.ff = _find_scan_end(data, pos)
            scan.data_start, scan.data_end = pos, end
            scans.append(scan)
            pos = end
    if frame is None or not scans:
        raise FormatError("corrupted JPEG: no frame or no scan")
    return JpegFile(data, frame, scans, segments)


def _parse_sos(body: bytes, frame: Frame, dc_tables: dict, ac_tables: dict, restart: int) -> Scan:
    if not body:
        raise FormatError("corrupted JPEG: empty scan header")
    n = body[0]
    if not 1 <= n <= 4 or len(body) != 4 + 2 * n:
        raise FormatError("corrupted JPEG: bad scan header")
    ids = [c.ident for c in frame.components]
    comps = []
    for i in range(n):
        cid, tables = body[1 + 2 * i], body[2 + 2 * i]
        if cid not in ids:
            raise FormatError("corrupted JPEG: scan names an unknown component")
        td, ta = tables >> 4, tables & 15
        if td not in dc_tables or ta not in ac_tables:
            raise FormatError("corrupted JPEG: scan uses an undefined Huffman table")
        comps.append((ids.index(cid), td, ta))
    ss, se, ahal = body[1 + 2 * n], body[2 + 2 * n], body[3 + 2 * n]
    if ss != 0 or se != 63 or ahal != 0:
        raise UnsupportedError("progressive scan parameters are not supported (only baseline sequential)")
    if n > 1 and sum(frame.components[c].h * frame.components[c].v for c, _, _ in comps) > 10:
        raise FormatError("corrupted JPEG: more than 10 blocks per MCU")
    return Scan(comps, 0, 0, restart, dict(dc_tables), dict(ac_tables))


def strip_metadata(jpeg: JpegFile) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The file without its APPn and COM segments and without the bytes after EOI (EXIF, GPS positions,
    thumbnails, comments, appended videos), and those pieces as (offset in the file, bytes)."""
    data = jpeg.data
    pieces = [(start, data[start:start + n]) for marker, start, n in jpeg.segments
              if 0xE0 <= marker <= 0xEF or marker == COM]
    marker, start, n = jpeg.segments[-1]  # EOI
    if start + n < len(data):
        pieces.append((start + n, data[start + n:]))
    out, cursor = [], 0
    for at, b in pieces:
        out.append(data[cursor:at])
        cursor = at + len(b)
    out.append(data[cursor:])
    return b"".join(out), pieces


def restore_metadata(jpeg: bytes, pieces: list[tuple[int, bytes]]) -> bytes:
    """The inverse of `strip_metadata`: the pieces put back at their offsets in the original file."""
    out = bytearray(jpeg)
    for at, b in pieces:  # in increasing offset order: each insertion restores the file up to its end
        if at > len(out):
            raise FormatError("corrupted rdec metadata segment (offset past the end of the image)")
        out[at:at] = b
    return bytes(out)
