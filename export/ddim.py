"""DDIM math in torch for training and evaluation: q_sample for L_simple, and eta = 0 sampling and
inversion (fixed-point refined) as twins. The schedule comes from the numpy twin rdec.runtime.ddim, so
both sides share one definition; see that module for the level/timestep conventions.
"""
from __future__ import annotations

from typing import Callable

import torch

from rdec.runtime.ddim import (BETA_END, BETA_START, T_DEFAULT, alphas_cumprod, level_alphas, relax_weights,
                               step_coeffs, timesteps)

EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Schedule:
    """abar_t as a tensor for training (q_sample), from the shared numpy schedule."""

    def __init__(self, T: int = T_DEFAULT, beta_start: float = BETA_START, beta_end: float = BETA_END):
        self.T, self.beta_start, self.beta_end = T, beta_start, beta_end
        self.abar = torch.from_numpy(alphas_cumprod(T, beta_start, beta_end))  # float64

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (eq. 1)."""
        ab = self.abar.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def kw(self) -> dict:
        return {"T": self.T, "beta_start": self.beta_start, "beta_end": self.beta_end}


def _tvec(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


@torch.no_grad()
def ddim_sample(eps_fn: EpsFn, x_T: torch.Tensor, c: torch.Tensor, steps: int, T: int = T_DEFAULT,
                beta_start: float = BETA_START, beta_end: float = BETA_END, spacing: str = "logsnr") -> torch.Tensor:
    """Deterministic DDIM sampling from level S (x_T) down to level 0 (eq. 4 with eta = 0)."""
    ts = timesteps(steps, T, beta_start, beta_end, spacing)
    ab = level_alphas(steps, T, beta_start, beta_end, spacing)
    x = x_T
    for i in range(steps, 0, -1):
        a, b = step_coeffs(ab[i], ab[i - 1])
        x = a * x + b * eps_fn(x, _tvec(int(ts[i - 1]), x), c)
    return x


@torch.no_grad()
def ddim_invert(eps_fn: EpsFn, x0: torch.Tensor, c: torch.Tensor, steps: int, refine: int = 0,
                T: int = T_DEFAULT, beta_start: float = BETA_START, beta_end: float = BETA_END,
                spacing: str = "logsnr", relax: bool = False) -> torch.Tensor:
    """DDIM inversion from level 0 to level S; `refine` fixed-point iterations per step (0 = plain DDIM
    inversion); relax=True over-relaxes them (see rdec.runtime.ddim).

    Each refined step solves x_i = a x_{i-1} + b eps(x_i, t_i, c), so that one `ddim_sample` step from x_i
    returns x_{i-1}.
    """
    if refine < 0:
        raise ValueError("refine must be >= 0")
    ts = timesteps(steps, T, beta_start, beta_end, spacing)
    ab = level_alphas(steps, T, beta_start, beta_end, spacing)
    w = relax_weights(steps, T, beta_start, beta_end, spacing) if relax else [1.0] * steps
    x = x0
    for i in range(1, steps + 1):
        tv = _tvec(int(ts[i - 1]), x)
        a, b = step_coeffs(ab[i - 1], ab[i])
        wi = float(w[i - 1])
        x_prev = x
        x = a * x_prev + b * eps_fn(x_prev, tv, c)
        for _ in range(refine):
            x = x + wi * (a * x_prev + b * eps_fn(x, tv, c) - x)
    return x
