"""ECEA speed and memory, measured side by side in one run (medians; ratios are what the targets are on).

Targets (issue 2): on a 1920x1080 photo, quality 75, 4:2:0, one thread, ECEA encrypt end to end at most
1.5x a plain Pillow JPEG encode of the same frame, and ECEA decrypt at most 1.5x a plain Pillow decode.
Also: frames per second at 640x480 and peak memory for a 3840x2160 frame.

    python benchmarks/ecea_speed.py [--image PATH] [--repeats N]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import threading
import time
import tracemalloc

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from rdec.secure_jpeg import ecea  # noqa: E402

DEFAULT_IMAGE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "train", "w001.png")


def frame(path: str, width: int, height: int) -> np.ndarray:
    """The photo scaled to cover width x height, centre-cropped (a camera-like frame)."""
    im = Image.open(path).convert("RGB")
    s = max(width / im.width, height / im.height)
    im = im.resize((max(width, round(im.width * s)), max(height, round(im.height * s))), Image.LANCZOS)
    left, top = (im.width - width) // 2, (im.height - height) // 2
    return np.asarray(im.crop((left, top, left + width, top + height)))


def pillow_encode(img: np.ndarray) -> bytes:
    """The baseline of the targets: a plain Pillow JPEG encode, quality 75, 4:2:0."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=75, subsampling=2)
    return buf.getvalue()


def pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def rounds(fns: dict, repeats: int) -> dict:
    """Run the candidates in turn, `repeats` rounds in a shuffled order each, so machine noise and the
    after-effects of the previous call (caches, freed memory) hit all of them alike; each one's times in s,
    round by round."""
    import random

    rng = random.Random(0)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        order = list(fns.items())
        rng.shuffle(order)
        for k, fn in order:
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def interleaved(fns: dict, repeats: int) -> dict:
    """The median time of each candidate over `rounds`."""
    return {k: statistics.median(v) for k, v in rounds(fns, repeats).items()}


def traced_peak(fn):
    """(result, peak traced memory) of fn run on a fresh thread, so its per-thread scratch buffers are
    allocated, and counted, inside the measurement."""
    box = {}

    def run():
        tracemalloc.start()
        box["result"] = fn()
        box["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return box["result"], box["peak"]


def steps_of(img: np.ndarray, key: bytes) -> tuple[list, list]:
    """Encrypt's and decrypt's steps, as `ecea.encrypt` / `ecea.decrypt` run them; each step takes the
    previous one's result."""
    from rdec.runtime.keys import KeyStream
    from rdec.secure_jpeg import blocks, container
    from rdec.secure_jpeg.dcperm import dc_stream, permute_dc

    h, w = img.shape[:2]
    nonce = os.urandom(16)
    header = container.Header(container.FLAG_STAGE1, 16, 3, h, w, nonce)
    sealed = ecea.encrypt(img, key, nonce=nonce)
    keys = {}

    def stage1(_):  # with the subkeys and the stage-2 words, which encrypt makes before the encode
        keys["dc"], keys["seal"] = dc_stream(key, nonce), container.SealKeys(key, nonce)
        scrambled = blocks.encrypt_blocks(img, KeyStream(key, nonce, "ecea/stage1"), 16, scratch=True)
        keys["dc"].prefetch(ecea._dc_units(scrambled.shape, "420") + 16)
        return scrambled

    enc = [
        ("stage 1 (pixel blocks)", stage1),
        ("encode of the scrambled frame", lambda x: ecea.jpeg_encode(x)),
        ("stage 2 (DC permutation)", lambda ec: permute_dc(ec, keys["dc"])),
        ("header + HMAC", lambda ece: container.seal(ece, header, keys["seal"])),
    ]
    dec = [
        ("verify header + HMAC", lambda _: container.open_sealed(sealed, key)[1]),
        ("stage 2 inverse", lambda ece: permute_dc(ece, dc_stream(key, nonce), inverse=True)),
        ("decode of the EC file", lambda ec: ecea.jpeg_decode(ec)),
        ("stage 1 inverse", lambda x: blocks.decrypt_blocks(x, KeyStream(key, nonce, "ecea/stage1"), 16, h, w,
                                                            in_place=True)),
    ]
    return enc, dec


def timed_steps(steps: list, laps: dict):
    """A candidate for `interleaved` that runs the steps one after another, recording each one's time."""
    def run():
        value = None
        for name, fn in steps:
            t = time.perf_counter()
            value = fn(value)
            laps.setdefault(name, []).append(time.perf_counter() - t)
    return run


def parts(img: np.ndarray, key: bytes, repeats: int) -> dict:
    """The parts of stage 1 and stage 2, each on its own (interleaved)."""
    from rdec.runtime.keys import KeyStream
    from rdec.secure_jpeg import block_simd, blocks, markers
    from rdec.secure_jpeg.entropy import analyze_scan, rewrite_scan

    h, w = img.shape[:2]
    nonce = os.urandom(16)
    ec = ecea.jpeg_encode(blocks.encrypt_blocks(img, KeyStream(key, nonce, "ecea/stage1"), 16))
    parsed = markers.parse(ec)
    units = analyze_scan(parsed, parsed.scans[0])
    identity = np.arange(units.length.size)
    hp, wp = blocks.padded_size(h, w, 16)
    bkey = blocks.block_key(KeyStream(key, nonce, "ecea/stage1"), (hp // 16) * (wp // 16), True)
    tiles, grid = np.empty(hp * wp * 3, np.uint8), np.empty(hp * wp * 3, np.uint8)
    src = img.reshape(-1)
    return interleaved({
        "stage 1: keyed draws": lambda: blocks.block_key(KeyStream(key, nonce, "ecea/stage1"), bkey.perm.size, True),
        "stage 1: frame -> tiles": lambda: block_simd.to_tiles(src, tiles, h, w, wp, 16, 3),
        "stage 1: keyed moves tiles -> grid": lambda: block_simd.move(tiles, grid, wp, 16, bkey.perm, bkey.dihedral,
                                                                      bkey.order, bkey.negate, 3),
        "stage 1 inverse: keyed moves in place": lambda: block_simd.permute_in_place(
            grid, wp, 16, bkey.perm, bkey.dihedral, bkey.order, bkey.negate, 3),
        "stage 2: marker parse": lambda: markers.parse(ec),
        "stage 2: Huffman decode of the scan": lambda: analyze_scan(parsed, parsed.scans[0]),
        "stage 2: scan re-emission": lambda: rewrite_scan(units, identity),
    }, repeats)


def breakdown(laps: dict, enc_names: list, dec_names: list, part: dict, med: dict) -> None:
    """Where the time goes: the steps timed inside the totals' rounds (their sum beside the total), the
    parts on their own, and the floor of this design: the JPEG codec plus the Huffman decode and
    re-emission that stage 2 cannot skip, against the same rounds' Pillow baselines."""
    steps = {k: statistics.median(v) for k, v in laps.items()}
    for title, names, total in (("encrypt", enc_names, med["ecea_encrypt"]),
                                ("decrypt", dec_names, med["ecea_decrypt"])):
        print(f"    {title}, step by step in the same rounds (sum {sum(steps[n] for n in names) * 1e3:.2f} ms, "
              f"whole call {total * 1e3:.2f} ms):")
        for name in names:
            print(f"      {name:38s} {steps[name] * 1e3:6.2f} ms")
    print("    parts, each on its own:")
    for name, t in part.items():
        print(f"      {name:38s} {t * 1e3:6.2f} ms")
    scan = part["stage 2: Huffman decode of the scan"] + part["stage 2: scan re-emission"]
    for what, codec in (("encode", steps["encode of the scrambled frame"]), ("decode", steps["decode of the EC file"])):
        floor, base = codec + scan, med[f"pillow_{what}"]
        print(f"  floor of the design, {what}: libjpeg-turbo {what} + Huffman decode + re-emission (stage 1 and "
              f"the rest free) {floor * 1e3:.2f} ms = {floor / base:.2f}x a plain Pillow {what} ({base * 1e3:.2f} ms)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=DEFAULT_IMAGE, help="source photo (default: shared/data/train/w001.png)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    if not os.path.exists(args.image):
        print(f"benchmark image not found: {args.image} (pass --image)", file=sys.stderr)
        return 1
    key = os.urandom(32)
    rows = []
    for (w, h) in ((1920, 1080), (640, 480)):
        img = frame(args.image, w, h)
        ece = ecea.encrypt(img, key, quality=75, subsampling="420")  # also compiles the kernels
        plain = pillow_encode(img)
        ecea.decrypt(ece, key)
        candidates = {
            "pillow_encode": lambda: pillow_encode(img),
            "turbo_encode": lambda: ecea.jpeg_encode(img, 75, "420"),
            "ecea_encrypt": lambda: ecea.encrypt(img, key, quality=75, subsampling="420"),
            "pillow_decode": lambda: pillow_decode(plain),
            "turbo_decode": lambda: ecea.jpeg_decode(plain),
            "ecea_decrypt": lambda: ecea.decrypt(ece, key),
        }
        laps: dict = {}
        if (w, h) == (1920, 1080):
            enc_steps, dec_steps = steps_of(img, key)
            candidates["encrypt_steps"] = timed_steps(enc_steps, laps)
            candidates["decrypt_steps"] = timed_steps(dec_steps, laps)
        med = interleaved(candidates, args.repeats)
        rows.append((w, h, med))
        print(f"{w}x{h} q75 4:2:0 block 16, median of {args.repeats}:")
        print(f"  Pillow encode {med['pillow_encode']*1e3:7.2f} ms   ECEA encrypt {med['ecea_encrypt']*1e3:7.2f} ms"
              f"   ratio {med['ecea_encrypt']/med['pillow_encode']:.2f}x (target <= 1.5x)")
        print(f"    (the same libjpeg-turbo encode without Pillow {med['turbo_encode']*1e3:.2f} ms: ECEA costs "
              f"{med['ecea_encrypt']/med['turbo_encode']:.2f}x the encoder it wraps)")
        print(f"  Pillow decode {med['pillow_decode']*1e3:7.2f} ms   ECEA decrypt {med['ecea_decrypt']*1e3:7.2f} ms"
              f"   ratio {med['ecea_decrypt']/med['pillow_decode']:.2f}x (target <= 1.5x)")
        print(f"    (the same libjpeg-turbo decode without Pillow {med['turbo_decode']*1e3:.2f} ms: ECEA costs "
              f"{med['ecea_decrypt']/med['turbo_decode']:.2f}x the decoder it wraps)")
        if (w, h) == (1920, 1080):
            breakdown(laps, [n for n, _ in enc_steps], [n for n, _ in dec_steps], parts(img, key, args.repeats), med)
        if (w, h) == (640, 480):
            print(f"  640x480: ECEA encrypt {1/med['ecea_encrypt']:.0f} fps, decrypt {1/med['ecea_decrypt']:.0f} fps")
    img = frame(args.image, 3840, 2160)
    ecea.encrypt(img, key)
    ece, peak_enc = traced_peak(lambda: ecea.encrypt(img, key, quality=75, subsampling="420"))
    _, peak_dec = traced_peak(lambda: ecea.decrypt(ece, key))
    frame_mb = img.nbytes / 2**20
    print(f"3840x2160 (frame {frame_mb:.1f} MiB): peak traced memory encrypt {peak_enc/2**20:.1f} MiB "
          f"({peak_enc/img.nbytes:.1f}x frame), decrypt {peak_dec/2**20:.1f} MiB ({peak_dec/img.nbytes:.1f}x frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
