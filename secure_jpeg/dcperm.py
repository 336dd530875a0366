"""Stage 2 of ECEA: keyed permutation of DC code units inside runs of same-sign DC differences.

Per component, and never across a restart marker, the DC differences split into maximal runs whose
values are all negative or all non-negative. Inside such a run the running DC sum moves monotonically
between the run's unchanged end points, so any order of its units keeps every DC value legal, and the
sign pattern (hence the runs) is the same in the encrypted file, so the decryptor finds the same runs.
Units keep their Huffman codes: the scan's bit length per restart interval is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from rdec.runtime.keys import KeyStream, draw_below

from . import markers
from .entropy import ScanUnits, analyze_scan, rewrite_scan


@dataclass
class Runs:
    """Runs of one scan: block indices in component-then-decode order, each run's start and length, and
    for every Fisher-Yates draw its bound and the position it swaps down from."""

    order: np.ndarray
    start: np.ndarray
    length: np.ndarray
    bounds: np.ndarray
    swap_at: np.ndarray


@numba.njit(cache=True, inline="always")
def _chain(comp, ivl, diff, bpm):
    """The blocks in component order (stable) and each one's class: its component, restart interval and sign
    class packed. Every MCU has the same bpm slots, in scan order (comp[:bpm]), so block m * bpm + j goes to a
    place computed from its slot j (a counting sort chains every block through memory)."""
    u = np.uint64  # unsigned indices: no negative-index test on each access
    n = comp.size
    n_mcu = n // bpm
    order = np.empty(n, dtype=np.int32)
    cls = np.empty(n, dtype=np.int64)
    for j in range(bpm):
        c = comp[j]
        at, step = 0, 0
        for i in range(bpm):
            if comp[i] < c:
                at += n_mcu  # every MCU's block of that slot comes first
            elif comp[i] == c:
                at += i < j
                step += 1
        for m in range(n_mcu):
            b = u(m * bpm + j)
            q = u(at + m * step)
            order[q] = b
            cls[q] = (np.int64(c) << 33) | (np.int64(ivl[b]) << 1) | np.int64(diff[b] < 0)
    return order, cls


@numba.njit(cache=True, inline="always")
def _draw_plan(cls):
    """Split the chain into maximal runs of one class; each run's start, and for every Fisher-Yates draw its
    bound and the position it swaps down from. Fisher-Yates on a run of length L at `base` draws below L,
    L-1, ..., 2, swapping down from base + L - 1, base + L - 2, ...: the j-th element of the run gives the
    j-th draw, if j < L - 1.

    Branch-free: the signs of DC differences are close to random and runs are short, so branches (or
    loops) on them would be mispredicted about every other block. A backward pass finds where each block's
    run ends, a forward pass where it starts; those give every draw.
    """
    n = cls.size
    end = np.empty(n, dtype=np.int32)  # one past the last block of the run of block i
    e = n
    for i in range(n - 1, 0, -1):
        end[i] = e
        e = i if cls[i] != cls[i - 1] else e
    if n:
        end[0] = e
    start = np.empty(n + 1, dtype=np.int64)
    bounds = np.empty(n + 1, dtype=np.int64)
    swap_at = np.empty(n + 1, dtype=np.int32)
    nruns = 0
    d = 0
    base = 0
    prev = np.int64(-1)
    for i in range(n):
        new = cls[i] != prev
        prev = cls[i]
        base = i if new else base
        start[nruns] = i
        nruns += new
        ei = np.int64(end[i])
        bounds[d] = ei - i
        swap_at[d] = ei - 1 - (i - base)
        d += i < ei - 1
    start[nruns] = n
    return start[:nruns + 1], bounds[:d], swap_at[:d]


@numba.njit(cache=True)
def _runs(comp, ivl, diff, bpm):
    order, cls = _chain(comp, ivl, diff, bpm)
    start, bounds, swap_at = _draw_plan(cls)
    return order, start[:-1], start[1:] - start[:-1], bounds, swap_at


def same_sign_runs(units: ScanUnits) -> Runs:
    """Maximal runs of DC differences of one sign class (< 0 or >= 0), per component and restart interval,
    with the Fisher-Yates draws they take."""
    _check_mcus(units)
    return Runs(*_runs(units.comp, units.interval, units.diff, units.blocks_per_mcu))


def _check_mcus(units: ScanUnits) -> None:
    if units.comp.size % units.blocks_per_mcu:
        raise ValueError("internal error: a scan's blocks are not whole MCUs")


@numba.njit(cache=True)
def _source_map(comp, ivl, diff, bpm, words, inverse):
    """Block k takes the DC unit of block src[k]: a keyed Fisher-Yates permutation inside every run, drawn
    from the keystream `words`, all runs' swaps in one flat loop (each swap stays inside its run). Runs,
    draws and swaps in one compiled call (as three, with the draws in between, they took 0.1 ms more a 1080p
    frame). Returns (src, words used), used = -1 if the words ran out."""
    u = np.uint64  # unsigned indices: no negative-index test on each access
    order, cls = _chain(comp, ivl, diff, bpm)
    _, bounds, swap_at = _draw_plan(cls)
    at = order.copy()  # the run positions' blocks, swapped
    src = np.empty(order.size, dtype=np.int32)
    w = 0
    for d in range(bounds.size):
        r, w = draw_below(words, w, bounds[d])
        if r < 0:
            return src, -1
        i = u(swap_at[d])
        j = u(i - bounds[d] + 1 + r)
        t = at[i]
        at[i] = at[j]
        at[j] = t
    for q in range(order.size):
        if inverse:
            src[u(at[q])] = order[q]
        else:
            src[u(order[q])] = at[q]
    return src, w


def dc_stream(key: bytes, nonce: bytes) -> KeyStream:
    """The keystream of an image's DC permutation."""
    return KeyStream(key, nonce, "ecea/stage2-dc")


def permute_dc(data: bytes | markers.JpegFile, stream: KeyStream, inverse: bool = False) -> bytes:
    """Permute (or, with inverse=True, restore) the DC units of every scan of a baseline JPEG; `stream` is the
    image's `dc_stream`."""
    jpeg = data if isinstance(data, markers.JpegFile) else markers.parse(data)
    pieces, cursor = [], 0
    for scan in jpeg.scans:
        units = analyze_scan(jpeg, scan)
        _check_mcus(units)
        src = stream.run(lambda words: _source_map(units.comp, units.interval, units.diff, units.blocks_per_mcu,
                                                   words, inverse), units.comp.size)  # draws < blocks
        pieces += [jpeg.data[cursor:scan.data_start], rewrite_scan(units, src)]
        cursor = scan.data_end
    pieces.append(jpeg.data[cursor:])
    return b"".join(pieces)


def dc_values(units: ScanUnits) -> np.ndarray:
    """Absolute DC value of every block (the prediction restarts per component at each restart interval)."""
    runs = same_sign_runs(units)
    comp, ivl = units.comp[runs.order], units.interval[runs.order]
    diff = units.diff[runs.order]
    group_start = np.flatnonzero(np.r_[True, (comp[1:] != comp[:-1]) | (ivl[1:] != ivl[:-1])])
    csum = np.cumsum(diff)
    offsets = np.repeat(csum[group_start] - diff[group_start], np.diff(np.append(group_start, diff.size)))
    values = np.empty(diff.size, dtype=np.int64)
    values[runs.order] = csum - offsets
    return values
