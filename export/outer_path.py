"""The outer (lossless-channel) path in torch: encrypt = c = Enc(block) and DDIM inversion to x_T with
fixed-point refinement; decrypt = DDIM sampling from x_T with c. Used by evaluation and tests.
"""
from __future__ import annotations

import torch

from .config import DDIMConfig
from .ddim import ddim_invert, ddim_sample
from .networks import OuterModel


def _kw(d: DDIMConfig) -> dict:
    return {"T": d.T, "beta_start": d.beta_start, "beta_end": d.beta_end, "spacing": d.spacing}


@torch.no_grad()
def encrypt_blocks(model: OuterModel, x0: torch.Tensor, ddim: DDIMConfig, steps: int, refine: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks (N, 3, 64, 64) in [-1, 1] -> (x_T, c)."""
    c = model.enc(x0)
    x_T = ddim_invert(model.unet, x0, c, steps, refine=refine, relax=ddim.relax, **_kw(ddim))
    return x_T, c


@torch.no_grad()
def decrypt_blocks(model: OuterModel, x_T: torch.Tensor, c: torch.Tensor, ddim: DDIMConfig, steps: int) -> torch.Tensor:
    """(x_T, c) -> blocks in [-1, 1] scale (not clipped)."""
    return ddim_sample(model.unet, x_T, c, steps, **_kw(ddim))
