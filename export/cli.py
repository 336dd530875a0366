"""`rdec train ...` and `rdec eval ...` subcommands (torch is imported only when they run)."""
from __future__ import annotations

import argparse
import sys


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return v


def _nonneg(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return v


def _train(args: argparse.Namespace) -> int:
    from .train import train

    res = train(args.config, args.stage, args.data, args.out, resume=args.resume, steps=args.steps,
                device=args.device, outer=args.outer, threads=args.threads, progress=not args.no_progress,
                max_minutes=args.max_minutes)
    if res["world_size"] == 1 or __import__("os").environ.get("RANK", "0") == "0":
        limit = " (stopped at --max-minutes; --resume continues)" if res["stopped_at_time_limit"] else ""
        print(f"stage {res['stage']}: step {res['step']}{limit}, loss {res['loss']:.5f}, "
              f"{res['elapsed_s']:.0f} s of training -> {res['out']}", file=sys.stderr)
    return 0


def _eval_lossless(args: argparse.Namespace) -> int:
    from rdec.runtime.keys import read_key_file

    from .eval_lossless import run_eval_lossless

    key = read_key_file(args.key) if args.key else None
    res = run_eval_lossless(args.data, args.out, model=args.model, steps=args.steps, refine=args.refine,
                            limit=args.limit, threads=args.threads, device=args.device,
                            progress=not args.no_progress, prior_data=args.prior_data, key=key)
    print(f"wrote {res['report']} and {res['grid']}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train the diffusion networks (stage 1: Enc + N_o, stage 2: N_i)",
        description="Train one stage of the reversed-diffusion networks with L_simple on random 64x64 crops of "
                    "the images in --data. Stage 1 trains the semantic encoder and the outer UNet N_o; stage 2 "
                    "trains the inner UNet N_i with the stage-1 encoder frozen (reads OUT/outer.pt or --outer). "
                    "Writes OUT/stage{1,2}_ckpt.pt (resumable), OUT/stage{1,2}_loss.csv and .png, and the EMA "
                    "model files OUT/outer.pt / OUT/inner.pt. Multi-GPU: torchrun --nproc_per_node N -m "
                    "rdec.runtime.cli train ...",
        epilog="example: rdec train --config export/configs/small.toml --stage 1 --data ../shared/data/train "
               "--out runs/small")
    p.add_argument("--config", required=True, help="TOML config file (or a name: tiny, small, paper)")
    p.add_argument("--stage", type=int, choices=(1, 2), required=True, help="1 = Enc + N_o, 2 = N_i")
    p.add_argument("--data", required=True, help="folder of training images (never Kodak/SIPI)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, logs, model files)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/stage{N}_ckpt.pt if it exists")
    p.add_argument("--steps", type=_positive, help="total steps (overrides the config's stage steps)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda (default auto)")
    p.add_argument("--outer", help="stage 2: the stage-1 outer.pt to freeze (default OUT/outer.pt)")
    p.add_argument("--threads", type=_positive, help="torch CPU threads (default: the config's)")
    p.add_argument("--max-minutes", type=_positive_float, help="stop cleanly (everything saved, resumable) after "
                                                                "this much wall time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate the diffusion side (see `rdec eval lossless --help`)",
                        description="Evaluation reports for the reversed-diffusion networks.")
    esub = ev.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    q = esub.add_parser(
        "lossless", help="decrypt(encrypt(x)) on the outer path only: PSNR/SSIM and x_T statistics",
        description="Encrypt every image of --data with the outer DDIM inversion (64x64 blocks, semantic code "
                    "c = Enc(block)) and decrypt by DDIM sampling, with no compression in between. Reports per "
                    "image and mean PSNR/SSIM for K = 0 and the chosen K, encrypted-image statistics of x_T "
                    "(entropy under linear and Gaussian-CDF 8-bit mappings, channel means, adjacent-pixel "
                    "correlation, distance from N(0, I) against block smoothness), the same for z, the keyed "
                    "mixing of x_T that travels, keyless attacks (the noise coloured by a Gaussian image model), "
                    "key sensitivity (a key one bit off) and timings. Writes OUT/report.md, OUT/grid.png, "
                    "OUT/smoothness.png and OUT/results.json.",
        epilog="example: rdec eval lossless --data ../shared/data/kodak --out docs/lossless")
    q.add_argument("--data", required=True, help="folder of test images (e.g. ../shared/data/kodak)")
    q.add_argument("--out", required=True, help="output folder for the report")
    q.add_argument("--model", help="model folder with outer.pt (default: the shipped export/default_model)")
    q.add_argument("--steps", type=_positive, help="DDIM steps (default: the model's config)")
    q.add_argument("--refine", type=_nonneg, help="fixed-point refinement iterations K (default: the model's)")
    q.add_argument("--limit", type=_positive, help="only the first N images")
    q.add_argument("--prior-data", help="folder whose 64x64 blocks fit the keyless attack's Gaussian image model "
                                        "(default: --data; e.g. ../shared/data/train for an attacker without the "
                                        "test images)")
    q.add_argument("--key", help="key file (rdec keygen) that mixes x_T (default: a fresh random key, never stored)")
    q.add_argument("--threads", type=_positive, default=2, help="torch CPU threads (default 2)")
    q.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=_eval_lossless)
