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

from rdec.runtime.keys import KeyStream

from . import markers
from .entropy import ScanUnits, analyze_scan, rewrite_scan


@dataclass
class Runs:
    """Runs of one scan: block indices in component-then-decode order, and each run's start and length."""

    order: np.ndarray
    start: np.ndarray
    length: np.ndarray


@numba.njit(cache=True)
def _runs(comp, ivl, diff):
    """Order blocks by component (stable), then split into maximal same-class runs; also the draw bounds."""
    n = comp.size
    ncomp = comp.max() + 1 if n else 0
    counts = np.zeros(ncomp + 1, dtype=np.int64)
    for i in range(n):
        counts[comp[i] + 1] += 1
    fill = np.cumsum(counts)[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        order[fill[comp[i]]] = i
        fill[comp[i]] += 1
    # A run starts where the component, the restart interval or the sign class changes. Branch-free:
    # the signs of DC differences are close to random, so a branch here would be mispredicted half the time.
    start = np.empty(n + 1, dtype=np.int64)
    nruns = 0
    prev = np.int64(-1)
    for i in range(n):
        b = order[i]
        cls = (comp[b] << 33) | (ivl[b] << 1) | np.int64(diff[b] < 0)
        start[nruns] = i
        nruns += cls != prev
        prev = cls
    start[nruns] = n
    length = start[1:nruns + 1] - start[:nruns]
    bounds = np.empty(n - nruns, dtype=np.int64)
    d = 0
    for r in range(nruns):
        for L in range(length[r], 1, -1):  # Fisher-Yates on a run of length L draws below L, L-1, ..., 2
            bounds[d] = L
            d += 1
    return order, start[:nruns], length, bounds


def same_sign_runs(units: ScanUnits) -> tuple[Runs, np.ndarray]:
    """Maximal runs of DC differences of one sign class (< 0 or >= 0), per component and restart interval,
    with the Fisher-Yates draw bounds of all runs."""
    order, start, length, bounds = _runs(units.comp, units.interval, units.diff)
    return Runs(order, start, length), bounds


@numba.njit(cache=True)
def _source_map(order, start, length, draws, inverse):
    """Block k takes the DC unit of block src[k]: a keyed Fisher-Yates permutation inside every run."""
    src = np.arange(order.size)
    perm = np.empty(length.max() if length.size else 0, dtype=np.int64)
    d = 0
    for r in range(start.size):
        n = length[r]
        if n < 2:
            continue
        for i in range(n):
            perm[i] = i
        for t in range(n - 1):
            i = n - 1 - t
            j = draws[d]
            d += 1
            tmp = perm[i]
            perm[i] = perm[j]
            perm[j] = tmp
        base = start[r]
        for i in range(n):
            a = order[base + i]
            b = order[base + perm[i]]
            if inverse:
                src[b] = a
            else:
                src[a] = b
    return src


def permute_dc(data: bytes | markers.JpegFile, key: bytes, nonce: bytes, inverse: bool = False) -> bytes:
    """Permute (or, with inverse=True, restore) the DC units of every scan of a baseline JPEG."""
    jpeg = data if isinstance(data, markers.JpegFile) else markers.parse(data)
    stream = KeyStream(key, nonce, "ecea/stage2-dc")
    pieces, cursor = [], 0
    for scan in jpeg.scans:
        units = analyze_scan(jpeg, scan)
        runs, bounds = same_sign_runs(units)
        draws = stream.below(bounds)
        src = _source_map(runs.order, runs.start, runs.length, draws, inverse)
        pieces += [jpeg.data[cursor:scan.data_start], rewrite_scan(units, src)]
        cursor = scan.data_end
    pieces.append(jpeg.data[cursor:])
    return b"".join(pieces)


def dc_values(units: ScanUnits) -> np.ndarray:
    """Absolute DC value of every block (the prediction restarts per component at each restart interval)."""
    runs, _ = same_sign_runs(units)
    comp, ivl = units.comp[runs.order], units.interval[runs.order]
    diff = units.diff[runs.order]
    group_start = np.flatnonzero(np.r_[True, (comp[1:] != comp[:-1]) | (ivl[1:] != ivl[:-1])])
    csum = np.cumsum(diff)
    offsets = np.repeat(csum[group_start] - diff[group_start], np.diff(np.append(group_start, diff.size)))
    values = np.empty_like(diff)
    values[runs.order] = csum - offsets
    return values
