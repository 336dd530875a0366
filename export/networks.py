"""Networks of the diffusion side: a DiffAE-style semantic encoder c = Enc(x) and a conditional UNet
eps(x_t, t, c) (time as scale-and-shift after GroupNorm, c as a scale), used for both N_o and N_i.

Export-friendly: static 64x64 blocks, no data-dependent Python control flow; optional pixel-unshuffle
(factor `unshuffle`) so the `small` model works on 32x32x12 tensors and stays fast on a CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from rdec.runtime.ddim import alphas_cumprod


@dataclass(frozen=True)
class UNetConfig:
    """Conditional UNet sizes."""
    ch: int = 64
    mults: tuple[int, ...] = (1, 2, 2)
    num_res: int = 1
    attn_res: tuple[int, ...] = (8,)   # feature-map sizes (after unshuffle) that get self-attention
    groups: int = 8
    heads: int = 4
    dropout: float = 0.0
    unshuffle: int = 2
    block: int = 64
    c_dim: int = 128
    # "eps": the network's output is eps. "v": it is v (Salimans & Ho 2022) and the module returns
    # eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v, so the identity that dominates eps at high noise is exact
    # and a network error there no longer becomes a large x0 error when sampling.
    param: str = "eps"
    T: int = 1000  # the schedule (copied from [ddim]): "v" needs abar_t
    beta_start: float = 1e-4
    beta_end: float = 0.02


@dataclass(frozen=True)
class EncoderConfig:
    """Semantic encoder sizes."""
    ch: int = 32
    mults: tuple[int, ...] = (1, 2, 4, 4)
    groups: int = 8
    unshuffle: int = 2
    block: int = 64
    c_dim: int = 128


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (B,) -> (B, dim), as in DDPM/improved-diffusion."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _zero(m: nn.Module) -> nn.Module:
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class CondResBlock(nn.Module):
    """ResBlock with AdaGN: h = (1 + s_c(c)) * ((1 + s_t) * GN(h) + b_t), DiffAE-style."""

    def __init__(self, cin: int, cout: int, temb: int, c_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t_proj = nn.Linear(temb, 2 * cout)
        self.c_proj = nn.Linear(c_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        ts, tb = self.t_proj(temb)[:, :, None, None].chunk(2, dim=1)
        cs = self.c_proj(c)[:, :, None, None]
        h = (1 + cs) * ((1 + ts) * self.norm2(h) + tb)
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class PlainResBlock(nn.Module):
    """Unconditional ResBlock for the encoder."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the spatial positions (plain matmul + softmax; ONNX-friendly)."""

    def __init__(self, ch: int, groups: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, hh, ww = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b * self.heads, 3 * ch // self.heads, hh * ww).chunk(3, dim=1)
        w = torch.softmax(torch.einsum("bcq,bck->bqk", q, k) * (ch // self.heads) ** -0.5, dim=-1)
        h = torch.einsum("bqk,bck->bcq", w, v).reshape(b, ch, hh, ww)
        return x + self.out(h)


class CondUNet(nn.Module):
    """eps(x_t, t, c) for 3 x block x block inputs in [-1, 1] scale; output has the input's shape (the network
    predicts eps directly, or v with `param = "v"`)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        u = cfg.unshuffle
        cin = 3 * u * u
        temb = 4 * cfg.ch
        self.temb = nn.Sequential(nn.Linear(cfg.ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.inp = nn.Conv2d(cin, cfg.ch, 3, padding=1)
        res = cfg.block // u
        chans = [cfg.ch]
        cur = cfg.ch
        self.down = nn.ModuleList()
        for lvl, m in enumerate(cfg.mults):
            for _ in range(cfg.num_res):
                layer = nn.ModuleList([CondResBlock(cur, cfg.ch * m, temb, cfg.c_dim, cfg.groups, cfg.dropout)])
                cur = cfg.ch * m
                if res in cfg.attn_res:
                    layer.append(Attention(cur, cfg.groups, cfg.heads))
                self.down.append(layer)
                chans.append(cur)
            if lvl != len(cfg.mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                chans.append(cur)
                res //= 2
        self.mid = nn.ModuleList([CondResBlock(cur, cur, temb, cfg.c_dim, cfg.groups, cfg.dropout),
                                  Attention(cur, cfg.groups, cfg.heads),
                                  CondResBlock(cur, cur, temb, cfg.c_dim, cfg.groups, cfg.dropout)])
        self.up = nn.ModuleList()
        for lvl, m in reversed(list(enumerate(cfg.mults))):
            for j in range(cfg.num_res + 1):
                layer = nn.ModuleList([CondResBlock(cur + chans.pop(), cfg.ch * m, temb, cfg.c_dim, cfg.groups,
                                                    cfg.dropout)])
                cur = cfg.ch * m
                if res in cfg.attn_res:
                    layer.append(Attention(cur, cfg.groups, cfg.heads))
                if lvl != 0 and j == cfg.num_res:
                    layer.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    layer.append(nn.Conv2d(cur, cur, 3, padding=1))
                    res *= 2
                self.up.append(layer)
        self.out = nn.Sequential(nn.GroupNorm(cfg.groups, cur), nn.SiLU(), _zero(nn.Conv2d(cur, cin, 3, padding=1)))
        if cfg.param == "v":  # not saved: derived from the config
            ab = torch.from_numpy(alphas_cumprod(cfg.T, cfg.beta_start, cfg.beta_end)).float()
            self.register_buffer("sqrt_ab", ab.sqrt(), persistent=False)
            self.register_buffer("sqrt_1m_ab", (1 - ab).sqrt(), persistent=False)

    @staticmethod
    def _run(layer: nn.ModuleList, h: torch.Tensor, temb: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for mod in layer:
            h = mod(h, temb, c) if isinstance(mod, CondResBlock) else mod(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        u = self.cfg.unshuffle
        temb = self.temb(timestep_embedding(t, self.cfg.ch).to(x.dtype))
        h = F.pixel_unshuffle(x, u) if u > 1 else x
        h = self.inp(h)
        hs = [h]
        for layer in self.down:
            h = self._run(layer, h, temb, c)
            hs.append(h)
        h = self._run(self.mid, h, temb, c)
        for layer in self.up:
            h = self._run(layer, torch.cat([h, hs.pop()], dim=1), temb, c)
        h = self.out(h)
        out = F.pixel_shuffle(h, u) if u > 1 else h
        if self.cfg.param == "v":
            shape = (-1,) + (1,) * (x.dim() - 1)
            out = self.sqrt_1m_ab[t].view(shape).to(x.dtype) * x + self.sqrt_ab[t].view(shape).to(x.dtype) * out
        return out


class SemanticEncoder(nn.Module):
    """c = Enc(x): conv ResNet with downsampling, global average pool, linear head (DiffAE-style)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        u = cfg.unshuffle
        layers: list[nn.Module] = [nn.Conv2d(3 * u * u, cfg.ch, 3, padding=1)]
        cur = cfg.ch
        for lvl, m in enumerate(cfg.mults):
            layers.append(PlainResBlock(cur, cfg.ch * m, cfg.groups))
            cur = cfg.ch * m
            if lvl != len(cfg.mults) - 1:
                layers.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
        layers += [nn.GroupNorm(cfg.groups, cur), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cur, cfg.c_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.cfg.unshuffle
        h = self.body(F.pixel_unshuffle(x, u) if u > 1 else x)
        return self.head(h.mean(dim=(2, 3)))


class OuterModel(nn.Module):
    """Enc + N_o trained jointly in stage 1 (one module so DDP wraps both)."""

    def __init__(self, enc_cfg: EncoderConfig, unet_cfg: UNetConfig):
        super().__init__()
        self.enc = SemanticEncoder(enc_cfg)
        self.unet = CondUNet(unet_cfg)

    def forward(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, self.enc(x0))


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
