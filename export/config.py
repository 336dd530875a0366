"""Model and training configs read from TOML files (export/configs/*.toml), validated into dataclasses.

A bad or incomplete file raises rdec.runtime.errors.InputError with the offending key, never a KeyError.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from rdec.runtime.ddim import SPACINGS
from rdec.runtime.errors import InputError
from rdec.runtime.fileio import read_bytes

from .networks import EncoderConfig, UNetConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class DDIMConfig:
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    steps: int = 20
    refine: int = 4
    spacing: str = "logsnr"
    relax: bool = False


@dataclass(frozen=True)
class StageConfig:
    steps: int
    batch: int
    lr: float
    warmup: int
    ema: float
    grad_clip: float
    ckpt_every: int
    log_every: int
    seed: int
    threads: int


@dataclass(frozen=True)
class Config:
    name: str
    ddim: DDIMConfig
    encoder: EncoderConfig
    unet: UNetConfig  # N_o
    inner_unet: UNetConfig  # N_i: [unet] with the keys of the optional [inner] section replaced
    stages: dict[int, StageConfig]
    raw: dict   # the parsed TOML, stored with checkpoints and model files


def _section(raw: dict, key: str, source: str) -> dict:
    sec = raw.get(key)
    if key in raw and not isinstance(sec, dict):
        raise InputError(f"config {source}: {key} must be a section [{key}], got {sec!r}")
    if not isinstance(sec, dict):
        raise InputError(f"config {source}: missing section [{key}]")
    return sec


def _build(cls, sec: dict, name: str, source: str, tuples=(), **extra):
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(sec) - fields
    if unknown:
        raise InputError(f"config {source}: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    for k in tuples:
        if k in sec and not isinstance(sec[k], list):
            raise InputError(f"config {source}: {name}.{k} must be a list of positive integers, got {sec[k]!r}")
    kw = {k: (tuple(v) if k in tuples else v) for k, v in sec.items()}
    kw.update(extra)
    try:
        obj = cls(**kw)
    except TypeError as e:
        raise InputError(f"config {source}: bad [{name}] section ({e})") from None
    for f in dataclasses.fields(cls):
        v = getattr(obj, f.name)
        if f.name in tuples:
            ok = isinstance(v, tuple) and all(isinstance(i, int) and i > 0 for i in v)
        elif f.type in ("int", int):
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        elif f.type in ("bool", bool):
            ok = isinstance(v, bool)
        elif f.type in ("float", float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
        else:
            ok = True
        if not ok:
            raise InputError(f"config {source}: bad value for {name}.{f.name}: {v!r}")
    return obj


SECTIONS = ("ddim", "encoder", "unet", "inner", "stage1", "stage2")


def _check_widths(c, sec: str, source: str) -> None:
    """Sizes every network of the config can be built with (else torch fails deep inside, or later)."""
    for key in ("ch", "groups", "unshuffle", "c_dim", "block") + (("heads",) if sec != "encoder" else ()):
        if getattr(c, key) < 1:
            raise InputError(f"config {source}: {sec}.{key} must be >= 1")
    if not c.mults:
        raise InputError(f"config {source}: {sec}.mults must not be empty")
    if c.block % c.unshuffle or 64 % c.unshuffle:
        raise InputError(f"config {source}: {sec}.unshuffle must divide the 64-pixel block")
    widths = [c.ch * m for m in c.mults] + [c.ch]
    if any(w % c.groups for w in widths):
        raise InputError(f"config {source}: {sec}.groups={c.groups} must divide every channel width {widths}")
    if sec == "encoder":
        return
    if not 0 <= c.dropout < 1:
        raise InputError(f"config {source}: {sec}.dropout must be in [0, 1)")
    sizes = [c.block // c.unshuffle >> i for i in range(len(c.mults))]
    if any(r not in sizes for r in c.attn_res):  # a typo would silently leave the UNet without attention
        raise InputError(f"config {source}: {sec}.attn_res {list(c.attn_res)} must be feature-map sizes of the "
                         f"UNet levels {sizes}")
    attn_widths = sorted({c.ch * m for m, r in zip(c.mults, sizes) if r in c.attn_res} | {c.ch * c.mults[-1]})
    if any(w % c.heads for w in attn_widths):
        raise InputError(f"config {source}: {sec}.heads={c.heads} must divide the width of every attention layer "
                         f"{attn_widths}")


def config_from_dict(raw: dict, source: str = "<dict>") -> Config:
    """Validate a parsed TOML dict into a Config."""
    unknown = set(raw) - set(SECTIONS) - {"name"}
    if unknown:
        raise InputError(f"config {source}: unknown section(s) or key(s) {', '.join(sorted(unknown))} "
                         f"(known: name, {', '.join(f'[{s}]' for s in SECTIONS)})")
    enc_sec = _section(raw, "encoder", source)
    enc = _build(EncoderConfig, enc_sec, "encoder", source, tuples=("mults",))
    ddim = _build(DDIMConfig, _section(raw, "ddim", source), "ddim", source)
    sched = {"c_dim": enc.c_dim, "T": ddim.T, "beta_start": ddim.beta_start, "beta_end": ddim.beta_end}
    unet_sec = _section(raw, "unet", source)
    inner_sec = raw.get("inner", {})
    if not isinstance(inner_sec, dict):
        raise InputError(f"config {source}: [inner] must be a section")
    unet = _build(UNetConfig, unet_sec, "unet", source, tuples=("mults", "attn_res"), **sched)
    inner_unet = _build(UNetConfig, {**unet_sec, **inner_sec}, "inner", source, tuples=("mults", "attn_res"), **sched)
    stages = {}
    for s in (1, 2):
        stages[s] = _build(StageConfig, _section(raw, f"stage{s}", source), f"stage{s}", source)
        st = stages[s]
        if min(st.batch, st.steps, st.ckpt_every, st.log_every, st.threads) < 1:
            raise InputError(f"config {source}: stage{s} steps, batch, ckpt_every, log_every and threads must be >= 1")
        if not 0 < st.lr <= 1 or not 0 <= st.ema < 1:
            raise InputError(f"config {source}: stage{s} needs 0 < lr <= 1 and 0 <= ema < 1")
    for sec, c in (("encoder", enc), ("unet", unet), ("inner", inner_unet)):
        _check_widths(c, sec, source)
    for sec, u in (("unet", unet), ("inner", inner_unet)):
        if u.param not in ("eps", "v"):
            raise InputError(f"config {source}: {sec}.param must be eps or v, got {u.param!r}")
        if u.ch % 2:
            raise InputError(f"config {source}: {sec}.ch must be even (sinusoidal time embedding)")
        if (u.block // u.unshuffle) % (2 ** (len(u.mults) - 1)):
            raise InputError(f"config {source}: too many UNet levels for the block size in [{sec}]")
    if not 1 <= ddim.steps <= ddim.T:
        raise InputError(f"config {source}: ddim.steps must be in 1..T")
    if ddim.spacing not in SPACINGS:
        raise InputError(f"config {source}: ddim.spacing must be one of {', '.join(SPACINGS)}")
    if not 0 < ddim.beta_start < ddim.beta_end < 1:
        raise InputError(f"config {source}: need 0 < beta_start < beta_end < 1")
    return Config(name=str(raw.get("name", source)), ddim=ddim, encoder=enc, unet=unet, inner_unet=inner_unet,
                  stages=stages, raw=raw)


MAX_CONFIG_BYTES = 1 << 20


def _config_path(path: str | Path) -> Path:
    """A bare name like `small` means export/configs/small.toml."""
    p = Path(path)
    return CONFIG_DIR / f"{p.name}.toml" if not p.suffix and not p.exists() else p


def _read_toml(p: Path) -> dict:
    data = read_bytes(p, MAX_CONFIG_BYTES, InputError, what="config file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"config {p} is not valid TOML: {e}") from None


def _resolve_base(raw: dict, p: Path, seen: tuple[Path, ...] = ()) -> dict:
    """`base = "small.toml"` (a path relative to the file, or a bare name as for --config): start from that
    config and replace the keys this file sets, section by section. The result is self-contained (no `base`),
    as stored with checkpoints; a file without its own `name` is named after its path, like any other."""
    if "base" not in raw:
        return raw
    base = raw["base"]
    if not isinstance(base, str) or not base:
        raise InputError(f"config {p}: base must be a config file name, got {base!r}")
    try:
        bp, here = _config_path(p.parent / base).resolve(), p.resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes
        raise InputError(f"config {p}: cannot find its base {base!r}") from None
    if bp in seen or bp == here:
        raise InputError(f"config {p}: base configs form a cycle through {bp.name}")
    merged = dict(_resolve_base(_read_toml(bp), bp, seen + (here,)))
    merged.pop("name", None)
    for k, v in raw.items():
        if k == "base":
            continue
        merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file. A bare name like `small` means export/configs/small.toml."""
    p = _config_path(path)
    return config_from_dict(_resolve_base(_read_toml(p), p), str(path))
