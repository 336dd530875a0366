"""DDIM math in numpy for the device side: the beta schedule, fixed timestep lists, and eta = 0 sampling
and inversion (with fixed-point refinement) written as twins. The single source of the schedule math;
the torch twin in rdec.export.ddim imports it. Never imports torch.

Conventions (shared with the torch twin, eqs. 1-5 of the paper):
- linear betas from `beta_start` to `beta_end` over T = 1000 training steps, abar_t = prod(1 - beta_s).
- A run of S steps visits levels 0..S: level 0 is the clean block (abar = 1), level i > 0 is timestep
  t_i, with t_S = T - 1 (the encrypted noise x_T). Default spacing "logsnr": t_1 = 0 and the t_i evenly
  spaced in log(sigma_t), sigma_t = sqrt((1 - abar_t) / abar_t). This keeps the noise-to-signal ratio of
  neighbouring levels constant, which bounds the contraction factor of the refinement (1 - sigma_{i-1} /
  sigma_i in the worst, noise-like direction) at every step; "uniform" (t_i = i T / S - 1, the common
  DDIM choice) has ratios near 0 at the low-noise end, where refinement then stalls.
- One DDIM step between levels moves x with the eps predicted at a point:
  x_to = sqrt(abar_to / abar_from) * x_from + (sqrt(1 - abar_to) - sqrt(abar_to (1 - abar_from) / abar_from)) * eps.
  Sampling i -> i-1 uses eps(x_i, t_i, c). Plain inversion i-1 -> i uses eps(x_{i-1}, t_i, c); refinement
  then solves x_i = inv(x_{i-1}, eps(x_i, t_i, c)) by fixed-point iteration, i.e. x_i such that one sampling
  step from it returns x_{i-1} exactly. K = 0 is plain DDIM inversion. No x0 clipping anywhere.
- The iteration is over-relaxed: x <- x + w_i (a x_{i-1} + b eps(x) - x) with w_i = 2 / (2 - min(s_i, 0.5)),
  s_i = 1 - sigma_{i-1} / sigma_i the worst-case slope of the plain map at step i (its Jacobian's spectrum
  lies in about [0, s_i] for a trained eps, which behaves like a denoiser). Same fixed point as the plain
  iteration (relax=False, w = 1, the default); with the trained `small` model at 20 steps relaxed K = 3
  beats plain K = 4. An untrained network has no such spectrum, so configs choose (`ddim.relax`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

T_DEFAULT = 1000
BETA_START = 1e-4
BETA_END = 0.02


def linear_betas(T: int = T_DEFAULT, beta_start: float = BETA_START, beta_end: float = BETA_END) -> np.ndarray:
    """The DDPM linear beta schedule (float64)."""
    if T < 1:
        raise ValueError("T must be >= 1")
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def alphas_cumprod(T: int = T_DEFAULT, beta_start: float = BETA_START, beta_end: float = BETA_END) -> np.ndarray:
    """abar_t = prod_{s<=t} (1 - beta_s) for t = 0..T-1 (float64)."""
    return np.cumprod(1.0 - linear_betas(T, beta_start, beta_end))


SPACINGS = ("logsnr", "uniform")


def timesteps(steps: int, T: int = T_DEFAULT, beta_start: float = BETA_START, beta_end: float = BETA_END,
              spacing: str = "logsnr") -> np.ndarray:
    """Fixed timestep list t_1..t_S (strictly ascending, int64, t_S = T - 1) for an S-step run."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1..{T}, got {steps}")
    if steps == 1:
        return np.array([T - 1], dtype=np.int64)
    if spacing == "uniform":
        return np.round(np.arange(1, steps + 1) * (T / steps)).astype(np.int64) - 1
    if spacing != "logsnr":
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    ab = alphas_cumprod(T, beta_start, beta_end)
    log_sigma = 0.5 * np.log((1.0 - ab) / ab)  # strictly increasing in t
    t = np.searchsorted(log_sigma, np.linspace(log_sigma[0], log_sigma[-1], steps)).astype(np.int64)
    t = np.minimum(t, T - 1)
    for i in range(1, steps):  # keep strictly increasing (rounding can collide at the low-noise end)
        t[i] = max(t[i], t[i - 1] + 1)
    for i in range(steps - 1, -1, -1):  # and inside 0..T-1 with t_S = T - 1
        t[i] = min(t[i], T - steps + i)
    return t


def level_alphas(steps: int, T: int = T_DEFAULT, beta_start: float = BETA_START,
                 beta_end: float = BETA_END, spacing: str = "logsnr") -> np.ndarray:
    """abar at levels 0..S (level 0 = clean, abar = 1), float64, length S + 1."""
    ab = alphas_cumprod(T, beta_start, beta_end)
    return np.concatenate([[1.0], ab[timesteps(steps, T, beta_start, beta_end, spacing)]])


def step_coeffs(abar_from: float, abar_to: float) -> tuple[float, float]:
    """(a, b) with x_to = a * x_from + b * eps: the one DDIM (eta = 0) update, both directions."""
    a = np.sqrt(abar_to / abar_from)
    b = np.sqrt(1.0 - abar_to) - np.sqrt(abar_to * (1.0 - abar_from) / abar_from)
    return float(a), float(b)


def relax_weights(steps: int, T: int = T_DEFAULT, beta_start: float = BETA_START, beta_end: float = BETA_END,
                  spacing: str = "logsnr") -> np.ndarray:
    """Over-relaxation weight w_i of the refinement at each inversion step i = 1..S (float64, length S)."""
    ab = level_alphas(steps, T, beta_start, beta_end, spacing)
    sigma = np.sqrt((1.0 - ab) / ab)
    s = 1.0 - sigma[:-1] / sigma[1:]
    return 2.0 / (2.0 - np.minimum(s, 0.5))


EpsFn = Callable[[np.ndarray, int, np.ndarray], np.ndarray]


def ddim_sample(eps_fn: EpsFn, x_T: np.ndarray, c: np.ndarray, steps: int, T: int = T_DEFAULT,
                beta_start: float = BETA_START, beta_end: float = BETA_END, spacing: str = "logsnr") -> np.ndarray:
    """Deterministic DDIM sampling from level S (x_T) down to level 0. eps_fn(x, t, c) -> eps."""
    ts = timesteps(steps, T, beta_start, beta_end, spacing)
    ab = level_alphas(steps, T, beta_start, beta_end, spacing)
    x = x_T
    for i in range(steps, 0, -1):
        a, b = step_coeffs(ab[i], ab[i - 1])
        x = a * x + b * eps_fn(x, int(ts[i - 1]), c)
    return x


def ddim_invert(eps_fn: EpsFn, x0: np.ndarray, c: np.ndarray, steps: int, refine: int = 0,
                T: int = T_DEFAULT, beta_start: float = BETA_START, beta_end: float = BETA_END,
                spacing: str = "logsnr", relax: bool = False) -> np.ndarray:
    """DDIM inversion from level 0 up to level S with `refine` fixed-point iterations per step.

    Twin of `ddim_sample`: each refined step solves x_i = a * x_{i-1} + b * eps(x_i, t_i, c), so one sampling
    step from x_i gives back x_{i-1}; refine = 0 is plain DDIM inversion (eps taken at x_{i-1}).
    """
    if refine < 0:
        raise ValueError("refine must be >= 0")
    ts = timesteps(steps, T, beta_start, beta_end, spacing)
    ab = level_alphas(steps, T, beta_start, beta_end, spacing)
    w = relax_weights(steps, T, beta_start, beta_end, spacing) if relax else np.ones(steps)
    x = x0
    for i in range(1, steps + 1):
        t = int(ts[i - 1])
        a, b = step_coeffs(ab[i - 1], ab[i])
        wi = float(w[i - 1])
        x_prev = x
        x = a * x_prev + b * eps_fn(x_prev, t, c)
        for _ in range(refine):
            x = x + wi * (a * x_prev + b * eps_fn(x, t, c) - x)
    return x
