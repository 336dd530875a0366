"""`rdec jpeg ...` subcommands: encrypt, decrypt, eval, stream, decrypt-stream."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from rdec.runtime.errors import InputError

JPEG_SUFFIXES = (".jpg", ".jpeg")


def _refuse_same_file(args: argparse.Namespace) -> None:
    """OUT must not be IN: the input would be replaced by its own encryption (or decryption)."""
    try:
        same = os.path.samefile(args.input, args.output)
    except (OSError, ValueError):  # OUT does not exist yet (or IN does not: reading it will say so)
        return
    if same:
        raise InputError(f"OUT is the same file as IN ({args.output}): writing it would destroy the input")


def _encrypt(args: argparse.Namespace) -> int:
    from rdec.runtime.fileio import atomic_write, load_image, read_bytes
    from rdec.runtime.keys import read_key_file

    from . import ecea

    if Path(args.output).suffix.lower() not in JPEG_SUFFIXES:
        raise InputError(f"the encrypted file is a JPEG: OUT must end in .jpg or .jpeg, got {args.output}")
    pixel_options = {"--block": args.block, "--quality": args.quality, "--subsampling": args.subsampling,
                     "--restart": args.restart}
    if args.dc_only and any(v is not None for v in pixel_options.values()):
        given = ", ".join(k for k, v in pixel_options.items() if v is not None)
        raise InputError(f"--dc-only keeps the JPEG as it is (no re-encoding): {given} cannot apply")
    _refuse_same_file(args)
    key = read_key_file(args.key)
    if args.dc_only:
        data = ecea.encrypt_jpeg(read_bytes(args.input), key)
    else:
        data = ecea.encrypt(load_image(args.input), key, block=args.block or ecea.DEFAULT_BLOCK,
                            quality=ecea.DEFAULT_QUALITY if args.quality is None else args.quality,
                            subsampling=args.subsampling or ecea.DEFAULT_SUBSAMPLING,
                            restart_interval=args.restart or 0)
    atomic_write(args.output, data)
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    from rdec.runtime.fileio import atomic_write, read_bytes, save_image
    from rdec.runtime.keys import read_key_file

    from . import ecea

    _refuse_same_file(args)
    key = read_key_file(args.key)
    data = read_bytes(args.input)
    if Path(args.output).suffix.lower() in JPEG_SUFFIXES:
        header, jpeg = ecea.decrypt_to_jpeg(data, key)
        if header.stage1:
            raise InputError("this file was encrypted with pixel-block stage 1: decrypt it to .png, .bmp or .tif")
        atomic_write(args.output, jpeg)
    else:
        save_image(args.output, ecea.decrypt(data, key))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import run_evaluation

    run_evaluation(args.data, args.out, quality=args.quality, subsampling=args.subsampling,
                   blocks=tuple(args.blocks))
    return 0


def _stream(args: argparse.Namespace) -> int:
    from rdec.runtime.keys import read_key_file

    from .stream import encrypt_stream

    encrypt_stream(args.source, args.out, read_key_file(args.key), block=args.block, quality=args.quality,
                   subsampling=args.subsampling, max_frames=args.max_frames, fps_limit=args.fps, stop=args.stop)
    return 0


def _decrypt_stream(args: argparse.Namespace) -> int:
    from rdec.runtime.keys import read_key_file

    from .stream import decrypt_folder

    decrypt_folder(args.input, args.out, read_key_file(args.key), stop=args.stop)
    return 0


def _add_jpeg_options(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """--block, --quality, --subsampling; defaults=False leaves them None when not given (so that a
    command can tell options given from defaults), the help still naming the defaults."""
    from .ecea import DEFAULT_BLOCK, DEFAULT_QUALITY, DEFAULT_SUBSAMPLING, SUBSAMPLING

    p.add_argument("--block", type=int, choices=(8, 16, 32), default=DEFAULT_BLOCK if defaults else None,
                   help=f"stage-1 block size in pixels (default {DEFAULT_BLOCK})")
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY if defaults else None, metavar="Q",
                   help=f"JPEG quality 1-100 (default {DEFAULT_QUALITY})")
    p.add_argument("--subsampling", choices=tuple(SUBSAMPLING), default=DEFAULT_SUBSAMPLING if defaults else None,
                   help=f"chroma subsampling (default {DEFAULT_SUBSAMPLING})")


def register(sub) -> None:
    p = sub.add_parser("jpeg", help="ECEA: JPEG-compatible encryption (encrypt, decrypt, eval, stream)",
                       description="ECEA: keyed pixel-block encryption, standard JPEG compression, then a keyed "
                                   "permutation of DC coefficient differences inside the JPEG bitstream. The "
                                   "output opens in any JPEG viewer as scrambled blocks.")
    jsub = p.add_subparsers(dest="jpeg_command", metavar="JPEG_COMMAND", required=True)

    e = jsub.add_parser("encrypt", help="encrypt an image (PNG/JPEG/BMP/TIFF) into an ECE JPEG",
                        description="Encrypt an image file (PNG, JPEG, BMP, TIFF; RGB or grayscale; any size) "
                                    "into a baseline JPEG that only the key holder can restore.")
    e.add_argument("input", metavar="IN")
    e.add_argument("output", metavar="OUT.jpg")
    e.add_argument("--key", required=True, metavar="KEYFILE", help="key file from `rdec keygen`")
    _add_jpeg_options(e, defaults=False)
    e.add_argument("--restart", type=int, metavar="MCUS",
                   help="emit a restart marker every MCUS MCUs (default 0: none)")
    e.add_argument("--dc-only", action="store_true",
                   help="IN is a baseline JPEG: apply only the bitstream stage (no re-encoding, no quality loss); "
                        "its metadata (EXIF, thumbnails, comments) is encrypted into the header")
    e.set_defaults(func=_encrypt)

    d = jsub.add_parser("decrypt", help="decrypt an ECE JPEG to a PNG (or the original JPEG for --dc-only files)",
                        description="Decrypt an ECE JPEG. OUT .png/.bmp/.tif gets the pixels; OUT .jpg restores the "
                                    "original JPEG bit for bit (files encrypted with --dc-only).")
    d.add_argument("input", metavar="IN.jpg")
    d.add_argument("output", metavar="OUT.png")
    d.add_argument("--key", required=True, metavar="KEYFILE", help="the key file the image was encrypted with")
    d.set_defaults(func=_decrypt)

    v = jsub.add_parser("eval", help="the paper's evaluation (entropy, correlation, NPCR/UACI, PSNR, ...)",
                        description="Evaluate C (plain JPEG), EC and ECE for each block size on a folder of "
                                    "images; writes report.md, CSV tables and a PNG figure to --out.")
    v.add_argument("--data", required=True, metavar="DIR", help="folder of test images (e.g. shared/data/sipi)")
    v.add_argument("--out", required=True, metavar="DIR")
    v.add_argument("--blocks", type=int, nargs="+", choices=(8, 16, 32), default=[8, 16, 32])
    v.add_argument("--quality", type=int, default=75, metavar="Q", help="JPEG quality 1-100 (default 75)")
    v.add_argument("--subsampling", choices=("444", "422", "420"), default="420",
                   help="chroma subsampling (default 420)")
    v.set_defaults(func=_eval)

    s = jsub.add_parser("stream", help="encrypt a camera, video file or folder of images, frame by frame",
                        description="Encrypt frames from SRC (a video file, a folder of images, or a camera: an "
                                    "index such as 0 or a /dev/video* path) into DIR/frame_NNNNNN.jpg, one fresh "
                                    "nonce per frame, written atomically. Ctrl-C stops cleanly.")
    s.add_argument("--source", required=True, metavar="SRC")
    s.add_argument("--out", required=True, metavar="DIR")
    s.add_argument("--key", required=True, metavar="KEYFILE")
    _add_jpeg_options(s)
    s.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames (default: all)")
    s.add_argument("--fps", type=float, default=0.0, help="pace reading at this many frames per second")
    s.set_defaults(func=_stream)

    ds = jsub.add_parser("decrypt-stream", help="decrypt a folder of encrypted frames",
                         description="Decrypt every frame_*.jpg in IN_DIR into OUT_DIR/frame_*.png.")
    ds.add_argument("input", metavar="IN_DIR")
    ds.add_argument("--out", required=True, metavar="OUT_DIR")
    ds.add_argument("--key", required=True, metavar="KEYFILE")
    ds.set_defaults(func=_decrypt_stream)
