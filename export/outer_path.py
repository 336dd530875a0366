"""The outer (lossless-channel) path in torch: encrypt = c = Enc(block) and DDIM inversion to x_T with
fixed-point refinement; decrypt = DDIM sampling from x_T with c. `invert`/`sample` run either UNet (the
inner N_i too). Used by evaluation and tests.

Blocks are independent (GroupNorm and attention work per block), so they go through the networks in
chunks: on this 2-core CPU a chunk of 24 blocks ran a UNet pass ~30% faster per block than all 96 blocks
of a Kodak image at once (the activations of a small chunk stay in cache).
"""
from __future__ import annotations

import torch

from .config import DDIMConfig
from .ddim import ddim_invert, ddim_sample
from .networks import CondUNet, OuterModel

CHUNK = 24


def _kw(d: DDIMConfig) -> dict:
    return {"T": d.T, "beta_start": d.beta_start, "beta_end": d.beta_end, "spacing": d.spacing}


@torch.no_grad()
def invert(unet: CondUNet, x0: torch.Tensor, c: torch.Tensor, ddim: DDIMConfig, steps: int, refine: int,
           chunk: int = CHUNK) -> torch.Tensor:
    """DDIM inversion of blocks through one conditional UNet (N_o or N_i), chunk by chunk."""
    return torch.cat([ddim_invert(unet, x, cc, steps, refine=refine, relax=ddim.relax, **_kw(ddim))
                      for x, cc in zip(x0.split(chunk), c.split(chunk))])


@torch.no_grad()
def sample(unet: CondUNet, x_T: torch.Tensor, c: torch.Tensor, ddim: DDIMConfig, steps: int,
           chunk: int = CHUNK) -> torch.Tensor:
    """DDIM sampling of blocks through one conditional UNet, chunk by chunk: the twin of `invert`."""
    return torch.cat([ddim_sample(unet, x, cc, steps, **_kw(ddim)) for x, cc in zip(x_T.split(chunk), c.split(chunk))])


@torch.no_grad()
def encrypt_blocks(model: OuterModel, x0: torch.Tensor, ddim: DDIMConfig, steps: int, refine: int,
                   chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks (N, 3, 64, 64) in [-1, 1] -> (x_T, c)."""
    c = torch.cat([model.enc(x) for x in x0.split(chunk)])
    return invert(model.unet, x0, c, ddim, steps, refine, chunk), c


def decrypt_blocks(model: OuterModel, x_T: torch.Tensor, c: torch.Tensor, ddim: DDIMConfig, steps: int,
                   chunk: int = CHUNK) -> torch.Tensor:
    """(x_T, c) -> blocks in [-1, 1] scale (not clipped)."""
    return sample(model.unet, x_T, c, ddim, steps, chunk)
