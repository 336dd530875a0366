"""Paired A/B of ECEA encrypt (or decrypt) against another checkout of rdec, in one process.

Both versions and a plain Pillow encode (decode) run in the same rounds, in a shuffled order, and what is
reported is the median of the per-round differences: on the development VMs one call varies by +-0.2 ms from
round to round, so separate runs cannot resolve changes of 0.1 ms, and the paired median can.

    git worktree add /tmp/base main~3       # or any other clone
    python benchmarks/ecea_ab.py /tmp/base [--rounds 400] [--decrypt] [--block 16] [--size 1920x1080]

The baseline's secure_jpeg/ is imported under another package name (with this checkout's rdec.runtime), so
a change to rdec.runtime that the baseline cannot use needs a baseline with it. Compiled kernels are cached in
a directory of this tool's own (numba's cache records the module name a kernel was compiled under).
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "rdec-ab-numba-cache"))
sys.path.insert(0, os.path.dirname(__file__))

from ecea_speed import DEFAULT_IMAGE, frame, pillow_decode, pillow_encode, rounds  # noqa: E402

from rdec.secure_jpeg import ecea  # noqa: E402


def baseline_ecea(checkout: str):
    """The ecea module of another checkout, imported as `rdec_baseline.ecea`."""
    sj = os.path.join(os.path.abspath(checkout), "secure_jpeg")
    if not os.path.isfile(os.path.join(sj, "ecea.py")):
        sys.exit(f"ecea_ab: error: no secure_jpeg/ecea.py in {checkout}")
    tmp = tempfile.mkdtemp(prefix="rdec-ab-")
    os.symlink(sj, os.path.join(tmp, "rdec_baseline"))
    sys.path.insert(0, tmp)
    return importlib.import_module("rdec_baseline.ecea")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("baseline", help="another checkout of rdec")
    p.add_argument("--rounds", type=int, default=400)
    p.add_argument("--decrypt", action="store_true", help="compare decryption instead of encryption")
    p.add_argument("--block", type=int, default=16)
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--image", default=DEFAULT_IMAGE)
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    img = frame(args.image, width, height)
    key = bytes(range(32))
    base = baseline_ecea(args.baseline)
    if args.decrypt:
        plain, old, new = pillow_encode(img), base.encrypt(img, key, block=args.block), ecea.encrypt(img, key,
                                                                                                  block=args.block)
        fns = {"pillow": lambda: pillow_decode(plain), "baseline": lambda: base.decrypt(old, key),
               "this": lambda: ecea.decrypt(new, key)}
    else:
        fns = {"pillow": lambda: pillow_encode(img), "baseline": lambda: base.encrypt(img, key, block=args.block),
               "this": lambda: ecea.encrypt(img, key, block=args.block)}
    for _ in range(10):  # compile and warm up
        for fn in fns.values():
            fn()
    print(f"  {args.rounds} rounds of the three ...", file=sys.stderr)
    times = rounds(fns, args.rounds)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    diff = sorted((a - b) * 1e3 for a, b in zip(times["this"], times["baseline"]))
    what = "decrypt" if args.decrypt else "encrypt"
    print(f"{width}x{height} block {args.block}, {what}, medians of {args.rounds} rounds: "
          f"Pillow {med['pillow']:.2f} ms, baseline {med['baseline']:.2f} ms ({med['baseline'] / med['pillow']:.3f}x), "
          f"this {med['this']:.2f} ms ({med['this'] / med['pillow']:.3f}x)")
    print(f"this - baseline, paired by round: median {diff[len(diff) // 2]:+.3f} ms "
          f"(quartiles {diff[len(diff) // 4]:+.3f} .. {diff[3 * len(diff) // 4]:+.3f})")


if __name__ == "__main__":
    main()
