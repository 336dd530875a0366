"""Training-step time of a config's stage-1 networks at several batch sizes, side by side in one run, with the
share of each step the device spends in kernels (the rest is the host launching them). Tells whether a
bigger batch is nearly free on a GPU, and how much making batches on the CPU costs a step.

    python benchmarks/train_step.py [--config small] [--batch 32 128 512] [--device auto] [--steps 30]

On a CPU, use --batch 8 32 and few steps: each step takes seconds.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from rdec.export.cli import _positive
from rdec.export.config import load_config
from rdec.export.ddim import Schedule
from rdec.export.networks import OuterModel
from rdec.export.train import pick_device, step_batch, train_step


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def step_times(cfg, dev: torch.device, batch: int, steps: int) -> tuple[float, float]:
    """Median wall seconds of one training step (rdec.export.train.train_step: forward, backward, Adam, EMA),
    and kernel seconds per step."""
    torch.manual_seed(0)
    model, ema = OuterModel(cfg.encoder, cfg.unet).to(dev), OuterModel(cfg.encoder, cfg.unet).to(dev)
    ema.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sched = Schedule(cfg.ddim.T, cfg.ddim.beta_start, cfg.ddim.beta_end)
    g = torch.Generator().manual_seed(1)
    x0 = (torch.rand(batch, 3, 64, 64, generator=g) * 2 - 1).to(dev)  # never zeros: real-valued data
    noise = torch.randn(x0.shape, generator=g).to(dev)
    t = torch.randint(0, cfg.ddim.T, (batch,), generator=g).to(dev)

    def one() -> None:
        train_step(model, model, ema, opt, sched, x0, noise=noise, t=t, enc=None, grad_clip=1.0, ema_decay=0.999)

    for _ in range(3):  # warm-up: allocator, cuDNN algorithm choice
        one()
    times = []
    for _ in range(steps):
        _sync(dev)
        t0 = time.perf_counter()
        one()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    kernel = float("nan")
    if dev.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        n = 5
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                one()
            _sync(dev)
        kernel = sum(e.self_device_time_total for e in prof.key_averages()) / 1e6 / n
    return statistics.median(times), kernel


def batch_cost(data: str | None, batch: int, reps: int = 10) -> float:
    """Seconds to make one step's crops, timesteps and noise on the CPU (as rdec train does)."""
    from rdec.export.data import CropSampler

    if data is None:
        return float("nan")
    sampler = CropSampler(data, seed=1)
    t0 = time.perf_counter()
    for step in range(reps):
        step_batch(sampler, 1, 0, step, batch, 1000)
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--batch", type=_positive, nargs="+", default=[32, 128, 512])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=_positive, default=30)
    ap.add_argument("--threads", type=_positive, default=1, help="torch CPU threads (default 1, as the configs)")
    default_data = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "train"
    ap.add_argument("--data", default=str(default_data) if default_data.is_dir() else None,
                    help="training images, to time making batches (default ../shared/data/train if there)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = load_config(args.config)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"config {cfg.name}, {name}, torch {torch.__version__}, {args.threads} CPU thread(s), "
          f"median of {args.steps} steps")
    print("| batch | step ms | crops/s | kernel ms per step | kernel share | making the batch on the CPU, ms |")
    print("|---|---|---|---|---|---|")
    for b in args.batch:
        wall, kernel = step_times(cfg, dev, b, args.steps)
        make = batch_cost(args.data, b)
        def ms(v: float) -> str:
            return "n/a" if v != v else f"{v * 1e3:.1f}"

        share = "n/a" if kernel != kernel else f"{kernel / wall:.0%}"
        print(f"| {b} | {ms(wall)} | {b / wall:.0f} | {ms(kernel)} | {share} | {ms(make)} |")


if __name__ == "__main__":
    main()
