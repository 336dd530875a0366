"""Saving and loading checkpoints and trained model files (atomic writes, typed errors on bad files).

A model folder holds `config.toml`-equivalent settings inside each file plus `outer.pt` (Enc + N_o EMA
weights) and `inner.pt` (N_i EMA weights); export/default_model/ is one such folder.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

from rdec.runtime.errors import FormatError, InputError
from rdec.runtime.fileio import atomic_write

from .config import Config, config_from_dict
from .networks import CondUNet, OuterModel

FORMAT = "rdec-diffusion-v1"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save through runtime.fileio.atomic_write (temporary file, then rename: never half-written).
    Serialized in memory first; checkpoints of these models are tens of MB."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def safe_load(path: str | Path) -> dict:
    """torch.load with weights_only=True; missing or corrupt files become typed errors."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such file: {path}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds (pickle, zip, runtime) for a corrupt file
        raise FormatError(f"not a readable checkpoint: {path} ({type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise FormatError(f"not an rdec diffusion checkpoint: {path}")
    return obj


def save_model_file(path: str | Path, kind: str, cfg: Config, state_dict: dict, step: int, half: bool = False) -> None:
    """Write one model file (`kind` = 'outer' or 'inner') with its config, EMA weights and training step."""
    sd = {k: (v.detach().to("cpu").half() if half and v.is_floating_point() else v.detach().to("cpu").clone())
          for k, v in state_dict.items()}
    atomic_torch_save({"format": FORMAT, "kind": kind, "config": cfg.raw, "step": step, "state_dict": sd}, path)


def _load_into(module: torch.nn.Module, sd: dict, path) -> None:
    try:
        module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    except (RuntimeError, AttributeError) as e:
        raise FormatError(f"weights in {path} do not match their config ({str(e).splitlines()[0]})") from None


def load_outer(path: str | Path) -> tuple[Config, OuterModel, int]:
    """(config, Enc + N_o in eval mode, training step) from an `outer.pt` file."""
    obj = safe_load(path)
    if obj.get("kind") != "outer":
        raise FormatError(f"{path} is not an outer (Enc + N_o) model file")
    cfg = config_from_dict(obj["config"], str(path))
    m = OuterModel(cfg.encoder, cfg.unet)
    _load_into(m, obj["state_dict"], path)
    return cfg, m.eval(), int(obj.get("step", 0))


def load_inner(path: str | Path) -> tuple[Config, CondUNet, int]:
    """(config, N_i in eval mode, training step) from an `inner.pt` file."""
    obj = safe_load(path)
    if obj.get("kind") != "inner":
        raise FormatError(f"{path} is not an inner (N_i) model file")
    cfg = config_from_dict(obj["config"], str(path))
    m = CondUNet(cfg.inner_unet)
    _load_into(m, obj["state_dict"], path)
    return cfg, m.eval(), int(obj.get("step", 0))


def load_model_dir(model_dir: str | Path) -> tuple[Config, OuterModel, int, CondUNet | None, int | None]:
    """(config, Enc + N_o, its step, N_i or None, its step) from a model folder; N_i must take the c of this
    Enc (the same c_dim and block)."""
    d = Path(model_dir)
    if not d.is_dir():
        raise InputError(f"model must be a folder holding outer.pt (and inner.pt): {model_dir}"
                         if d.exists() else f"no such model folder: {model_dir}")
    cfg, outer, step = load_outer(d / "outer.pt")
    if not (d / "inner.pt").is_file():
        return cfg, outer, step, None, None
    icfg, inner, istep = load_inner(d / "inner.pt")
    if (icfg.inner_unet.c_dim, icfg.inner_unet.block) != (cfg.encoder.c_dim, cfg.encoder.block):
        raise FormatError(f"{d / 'inner.pt'} does not belong with {d / 'outer.pt'} (its N_i takes c_dim "
                          f"{icfg.inner_unet.c_dim}, the encoder gives {cfg.encoder.c_dim})")
    return cfg, outer, step, inner, istep


def publish_model(run_dir: str | Path, dest: str | Path, config: Config) -> list[Path]:
    """Copy a training run's EMA model files into a model folder (e.g. export/default_model) with fp16
    weights (loaded back as float32) and `config`'s DDIM defaults, plus the loss logs and curves.
    inner.pt is optional (published once stage 2 exists); outer.pt is required."""
    import shutil

    run_dir, dest = Path(run_dir), Path(dest)
    objs = {}
    for name, kind in (("outer.pt", "outer"), ("inner.pt", "inner")):
        if kind == "inner" and not (run_dir / name).is_file():
            continue  # stage 2 not trained (yet): publish the outer model alone
        obj = safe_load(run_dir / name)
        field = "unet" if kind == "outer" else "inner_unet"
        if getattr(config_from_dict(obj["config"], name), field) != getattr(config, field):
            raise FormatError(f"{run_dir / name} was trained with a different UNet than {config.name}")
        objs[name, kind] = obj  # both checked before either is written: never a new outer beside an old inner
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for (name, kind), obj in objs.items():
        save_model_file(dest / name, kind, config, obj["state_dict"], int(obj["step"]), half=True)
        written.append(dest / name)
    for name in ("stage1_loss.csv", "stage1_loss.png", "stage2_loss.csv", "stage2_loss.png"):
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, dest / name)
            written.append(dest / name)
    return written
