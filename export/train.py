"""Training stages 1-2 with L_simple (eps-prediction MSE, t uniform in [0, T)).

Stage 1 trains the semantic encoder and the outer UNet N_o jointly on random 64x64 crops.
Stage 2 trains the inner UNet N_i with Enc (and N_o) frozen. N_i is a second conditional DDIM of the
*image* distribution, conditioned on the frozen c = Enc(x), trained from its own random init and seed:
sampling it from the encrypted noise x_T gives a natural-image-like (hence compressible) y, and its exact
inversion maps a decoded y^ back to x_T^ for the outer decryption. (Training N_i on N_o's inverted noise
instead would make y noise-like, i.e. incompressible, which defeats the inner pass.) Because N_i models
the same distribution as N_o, y resembles the block; protecting y is left to the key-driven parts of
the codec and must be scored by the leakage measurement (DESIGN "Measuring").

Features: EMA weights, checkpoint + exact resume (batches, timesteps and noise are functions of
(seed, rank, step)), tqdm bar, CSV loss log + PNG curve, DDP via torchrun (gloo on CPU, nccl on GPU),
device auto-selection. Outputs in OUT: stage{1,2}_ckpt.pt, stage{1,2}_loss.csv/.png, outer.pt, inner.pt.
"""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rdec.runtime.errors import InputError, TrainingDivergedError
from rdec.runtime.fileio import atomic_write, make_folder

from .config import Config, config_from_dict, load_config
from .data import CropSampler
from .ddim import Schedule
from .modelfile import atomic_torch_save, load_outer, safe_load, save_model_file
from .networks import CondUNet, OuterModel

CSV_FIELDS = ("step", "loss", "lr", "elapsed_s")


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without a GPU is an InputError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA GPU is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise InputError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return torch.device(name)


def _dist_init(device: torch.device) -> tuple[bool, int, int, torch.device]:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE/MASTER_ADDR set)."""
    import torch.distributed as dist

    if not all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return False, 0, 1, device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return True, rank, world, device


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """One fused lerp over all parameters (a launch per parameter dominated small-model steps on a GPU)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)
        for be, bm in zip(ema.buffers(), model.buffers()):
            be.copy_(bm)


def read_loss_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_loss_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({"step": int(r["step"]), "loss": f"{r['loss']:.6f}", "lr": f"{r['lr']:.3g}",
                    "elapsed_s": f"{r['elapsed_s']:.1f}"})
    atomic_write(path, buf.getvalue().encode())


def plot_loss(rows: list[dict], path: Path, title: str) -> None:
    """PNG loss curve: the logged L_simple and a moving average, log-scale y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [r["step"] for r in rows]
    loss = [r["loss"] for r in rows]
    k = max(1, len(loss) // 30)
    smooth = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, loss, lw=0.6, alpha=0.4, label="L_simple (per log interval)")
    ax.plot(steps, smooth, lw=1.5, label=f"moving average ({k})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


# Settings a run may change when resuming: how long, the learning rate (the CSV logs it per row), how often it
# logs and saves, how many threads, and the DDIM defaults for encrypting (unused in training).
_RESUMABLE = {"ddim": {"steps", "refine", "spacing", "relax"},
              "stage": {"steps", "lr", "ckpt_every", "log_every", "threads"}}  # lr: e.g. lowered after divergence


def config_changes(old_raw: dict, cfg: Config, stage: int) -> list[str]:
    """The settings (section.key) in effect for this stage that differ between a checkpoint's config and
    this run's (defaults spelled out or not): resuming with any of them changed would train something else."""
    import dataclasses

    try:
        old = config_from_dict(old_raw, "checkpoint")
    except InputError:
        return ["the checkpoint's whole config"]
    net = ("unet", "unet") if stage == 1 else ("inner", "inner_unet")
    pairs = [("ddim", old.ddim, cfg.ddim), ("encoder", old.encoder, cfg.encoder),
             (net[0], getattr(old, net[1]), getattr(cfg, net[1])),
             (f"stage{stage}", old.stages[stage], cfg.stages[stage])]
    return [f"{sec}.{f.name}" for sec, a, b in pairs for f in dataclasses.fields(a)
            if getattr(a, f.name) != getattr(b, f.name) and f.name not in _RESUMABLE.get(sec.rstrip("12"), ())]


def weights_id(module: torch.nn.Module) -> str:
    """SHA-256 of a module's weights: which frozen encoder a stage-2 checkpoint was trained against."""
    import hashlib

    h = hashlib.sha256()
    for name, v in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _diverged(what: str, saved_step: int, ckpt_path: Path) -> TrainingDivergedError:
    then = f"resume from {ckpt_path} (step {saved_step}) with a lower lr" if saved_step else \
        "start again with a lower lr"
    return TrainingDivergedError(f"training diverged ({what}); nothing after step {saved_step} was saved: {then}")


def step_batch(sampler: CropSampler, seed: int, rank: int, step: int, n: int, T: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crops, timesteps and noise of one training step, on the CPU: functions of (seed, rank, step)."""
    x0 = torch.from_numpy(sampler.batch(step, n))
    gen = torch.Generator().manual_seed(((seed * 1_000_003 + rank) * 1_000_033 + step) % (2 ** 63))
    t = torch.randint(0, T, (n,), generator=gen)
    return x0, t, torch.randn(x0.shape, generator=gen)


def train_step(net, model: torch.nn.Module, ema: torch.nn.Module, opt, sched: Schedule, x0: torch.Tensor,
               t: torch.Tensor, noise: torch.Tensor, enc: torch.nn.Module | None, grad_clip: float,
               ema_decay: float) -> torch.Tensor:
    """One L_simple update of `model` (called through `net`, its DDP wrapper or itself) and of its EMA.
    Stage 1 (enc None): net(x0, x_t, t) trains Enc and N_o together; stage 2: net(x_t, t, enc(x0)) with the
    frozen encoder. Returns the loss on the device (reading it would sync)."""
    x_t = sched.q_sample(x0, t, noise)
    if enc is None:
        pred = net(x0, x_t, t)
    else:
        with torch.no_grad():
            c = enc(x0)
        pred = net(x_t, t, c)
    loss = F.mse_loss(pred, noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    _ema_update(ema, model, ema_decay)
    return loss.detach()


def _lr_at(step: int, base: float, warmup: int) -> float:
    return base * min(1.0, (step + 1) / warmup) if warmup > 0 else base


def train(config: str | Path, stage: int, data: str | Path, out: str | Path, resume: bool = False,
          steps: int | None = None, device: str = "auto", outer: str | Path | None = None,
          threads: int | None = None, progress: bool = True, max_minutes: float | None = None) -> dict:
    """Run (or resume) one training stage; returns a summary dict (final step, loss, wall time).

    `max_minutes` stops the run cleanly (model file, log and checkpoint written) once that much wall time
    has passed, for time-boxed machines; with the constant learning rate the result is the same as a run
    asked for that many steps, and --resume continues it."""
    from tqdm import tqdm

    if stage not in (1, 2):
        raise InputError("--stage must be 1 or 2")
    cfg: Config = load_config(config)
    sc = cfg.stages[stage]
    total = sc.steps if steps is None else steps
    if total < 1:
        raise InputError("--steps must be >= 1")
    if max_minutes is not None and not max_minutes > 0:
        raise InputError("--max-minutes must be > 0")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    dev = pick_device(device)
    torch.set_num_threads(threads or sc.threads)
    distributed, rank, world, dev = _dist_init(dev)
    pool = None  # on a GPU: makes the next step's batch on the CPU while this step runs
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        ckpt_path = out / f"stage{stage}_ckpt.pt"
        csv_path, png_path = out / f"stage{stage}_loss.csv", out / f"stage{stage}_loss.png"
        if ckpt_path.exists() and not resume:
            raise InputError(f"{ckpt_path} exists; pass --resume to continue it or choose another --out")
        sampler = CropSampler(data, size=64, seed=sc.seed, rank=rank)
        sched = Schedule(cfg.ddim.T, cfg.ddim.beta_start, cfg.ddim.beta_end)

        torch.manual_seed(sc.seed)
        enc, enc_id = None, None
        if stage == 1:
            model = OuterModel(cfg.encoder, cfg.unet)
        else:
            outer_path = Path(outer) if outer else out / "outer.pt"
            if not outer_path.is_file():
                raise InputError(f"no such stage-1 model file: {outer_path}" if outer else
                                 f"stage 2 needs the stage-1 model {outer_path} (train stage 1 or pass --outer)")
            ocfg, om, _ = load_outer(outer_path)
            if ocfg.encoder.c_dim != cfg.unet.c_dim:
                raise InputError(f"{outer_path} has c_dim {ocfg.encoder.c_dim}, config wants {cfg.unet.c_dim}")
            enc = om.enc.to(dev).eval().requires_grad_(False)
            enc_id = weights_id(enc)
            model = CondUNet(cfg.inner_unet)
        model.to(dev)
        ema = (OuterModel(cfg.encoder, cfg.unet) if stage == 1 else CondUNet(cfg.inner_unet)).to(dev)
        ema.load_state_dict(model.state_dict())
        ema.requires_grad_(False)
        opt = torch.optim.Adam(model.parameters(), lr=sc.lr)

        start, elapsed0 = 0, 0.0
        if resume and ckpt_path.exists():
            ck = safe_load(ckpt_path)
            if ck.get("stage") != stage:
                raise InputError(f"{ckpt_path} is a stage-{ck.get('stage')} checkpoint")
            changed = config_changes(ck.get("config", {}), cfg, stage)
            if changed:
                raise InputError(f"{ckpt_path} was trained with other settings ({', '.join(changed)}); resume "
                                 f"with its config or choose another --out")
            try:
                model.load_state_dict(ck["model"])
                ema.load_state_dict(ck["ema"])
                opt.load_state_dict(ck["opt"])
            except (RuntimeError, KeyError, ValueError) as e:
                raise InputError(f"{ckpt_path} does not match config {config} ({str(e).splitlines()[0]})") from None
            if stage == 2 and ck.get("encoder", enc_id) != enc_id:
                raise InputError(f"{outer_path} is not the stage-1 model {ckpt_path} was trained against; "
                                 f"pass that one with --outer, or train stage 2 afresh in another --out")
            start, elapsed0 = int(ck["step"]), float(ck.get("elapsed_s", 0.0))
        rows = [r for r in read_loss_csv(csv_path) if r["step"] <= start] if start else []
        if rank == 0:
            make_folder(out)
            if stage == 1 and (out / "inner.pt").is_file():
                print(f"rdec: warning: {out / 'inner.pt'} was trained against the stage-1 model this run replaces; "
                      f"train stage 2 again afterwards", file=sys.stderr)

        net = model
        if distributed:
            import torch.distributed as dist
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)

        def save(step: int, elapsed: float) -> None:
            """The model file and loss log first, the checkpoint last: interrupted in between, a resume goes
            back to the previous checkpoint and rewrites the newer files, so no logged step is lost."""
            finite = torch.stack(torch._foreach_norm([p.detach() for p in model.parameters()])).isfinite().all()
            if not bool(finite):  # every rank holds the same weights, so all stop here
                raise _diverged(f"the weights after step {step} are not finite", start_saved, ckpt_path)
            if rank != 0:
                return
            save_model_file(out / ("outer.pt" if stage == 1 else "inner.pt"), "outer" if stage == 1 else "inner",
                            cfg, ema.state_dict(), step)
            write_loss_csv(csv_path, rows)
            plot_loss(rows, png_path, f"{cfg.name}: stage {stage} ({'Enc + N_o' if stage == 1 else 'N_i'})")
            atomic_torch_save({"format": "rdec-diffusion-v1", "stage": stage, "step": step, "elapsed_s": elapsed,
                               "config": cfg.raw, "model": model.state_dict(), "ema": ema.state_dict(),
                               "opt": opt.state_dict(), "encoder": enc_id}, ckpt_path)

        def batch(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return step_batch(sampler, sc.seed, rank, step, sc.batch, cfg.ddim.T)

        if dev.type == "cuda":
            from concurrent.futures import ThreadPoolExecutor

            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # put back below
            pool = ThreadPoolExecutor(1)
        pending = pool.submit(batch, start) if pool else None

        t0, start_saved = time.monotonic(), start
        acc, nacc = torch.zeros((), device=dev), 0  # summed on the device: no host sync per step
        bar = tqdm(total=total, initial=start, desc=f"stage {stage}", unit="step", file=sys.stderr,
                   disable=not progress or rank != 0, dynamic_ncols=True)
        model.train()
        loss_v, stopped = float("nan"), False
        for step in range(start, total):
            lr = _lr_at(step, sc.lr, sc.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            x0, t, noise = pending.result() if pool else batch(step)
            if pool and step + 1 < total:
                pending = pool.submit(batch, step + 1)
            x0, t, noise = (v.to(dev, non_blocking=True) for v in (x0, t, noise))
            loss = train_step(net, model, ema, opt, sched, x0, t, noise, enc, sc.grad_clip,
                              min(sc.ema, (1 + step) / (10 + step)))
            acc, nacc = acc + loss, nacc + 1
            done = step + 1
            out_of_time = False
            if max_minutes is not None and done % sc.log_every == 0:
                out_of_time = time.monotonic() - t0 >= 60 * max_minutes
                if distributed:  # every rank stops at the same step
                    flag = torch.tensor(float(out_of_time), device=dev)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    out_of_time = bool(flag.item())
            log_now = done % sc.log_every == 0 or done == total or out_of_time
            save_now = done % sc.ckpt_every == 0 or done == total or out_of_time
            if log_now or save_now:
                if distributed:  # the mean over ranks: every rank logs, and stops on, the same number
                    dist.all_reduce(acc)
                    acc /= world
                loss_v = acc.item() / nacc
                if not math.isfinite(loss_v):
                    raise _diverged(f"loss {loss_v} before step {done}", start_saved, ckpt_path)
            if log_now:
                rows.append({"step": done, "loss": loss_v, "lr": lr, "elapsed_s": elapsed0 + time.monotonic() - t0})
                bar.set_postfix(loss=f"{loss_v:.4f}")
                acc, nacc = torch.zeros((), device=dev), 0
            bar.update(1)
            if save_now:
                save(done, elapsed0 + time.monotonic() - t0)
                start_saved = done
            if out_of_time:
                total, stopped = done, True
                break
        bar.close()
        if start >= total and rank == 0:  # nothing to do: make sure the exported files exist
            save(start, elapsed0)
        last = rows[-1]["loss"] if rows else loss_v
        return {"stage": stage, "step": max(start, total), "loss": last,
                "elapsed_s": elapsed0 + time.monotonic() - t0, "out": str(out), "world_size": world,
                "stopped_at_time_limit": stopped}
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        if distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
