"""Image and encrypted-noise metrics for the diffusion evaluations: PSNR, SSIM, 8-bit entropy under
linear and Gaussian-CDF mappings, adjacent-pixel correlation, and per-block distance from N(0, 1).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LINEAR_RANGE = 3.0  # linear display mapping: x in [-3, 3] (99.7 % of N(0, 1)) -> 0..255


def psnr(ref: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of float arrays on a 0..peak scale (inf when identical)."""
    mse = float(np.mean((ref.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)


def ssim(ref: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), mean over HxWxC channels."""
    a = torch.from_numpy(np.asarray(ref, dtype=np.float64)).permute(2, 0, 1)[:, None]
    b = torch.from_numpy(np.asarray(test, dtype=np.float64)).permute(2, 0, 1)[:, None]
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    kx, ky = g.view(1, 1, 1, 11), g.view(1, 1, 11, 1)

    def blur(z):
        return F.conv2d(F.conv2d(z, kx), ky)

    mu_a, mu_b = blur(a), blur(b)
    saa = blur(a * a) - mu_a ** 2
    sbb = blur(b * b) - mu_b ** 2
    sab = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return float(m.mean())


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return torch.special.ndtr(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def to_8bit_cdf(x: np.ndarray) -> np.ndarray:
    """Gaussian-CDF mapping: u = Phi(x), byte = floor(256 u); ideal N(0, 1) noise gives uniform bytes."""
    return np.clip(np.floor(normal_cdf(x) * 256), 0, 255).astype(np.uint8)


def to_8bit_linear(x: np.ndarray, r: float = LINEAR_RANGE) -> np.ndarray:
    """Linear display mapping: [-r, r] -> 0..255, clipped."""
    return np.clip(np.round((np.asarray(x, dtype=np.float64) + r) / (2 * r) * 255), 0, 255).astype(np.uint8)


def to_8bit_minmax(x: np.ndarray) -> np.ndarray:
    """Linear min-max mapping of the whole array to 0..255."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x.min(), x.max()
    return np.round((x - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)


def entropy8(b: np.ndarray) -> float:
    """Shannon entropy in bits of the byte histogram (8.0 = uniform)."""
    p = np.bincount(np.asarray(b, dtype=np.uint8).ravel(), minlength=256).astype(np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum())


def channel_entropy8(img8: np.ndarray) -> float:
    """Mean over channels of the per-channel 8-bit entropy (HxWxC)."""
    return float(np.mean([entropy8(img8[..., k]) for k in range(img8.shape[-1])]))


def adjacent_correlation(img: np.ndarray) -> dict[str, float]:
    """Pearson correlation of horizontally, vertically and diagonally adjacent pixels, mean over channels."""
    x = np.asarray(img, dtype=np.float64)
    pairs = {"H": (x[:, :-1], x[:, 1:]), "V": (x[:-1, :], x[1:, :]), "D": (x[:-1, :-1], x[1:, 1:])}
    out = {}
    for k, (a, b) in pairs.items():
        cs = []
        for ch in range(x.shape[-1]):
            u, v = a[..., ch].ravel(), b[..., ch].ravel()
            su, sv = u.std(), v.std()
            cs.append(float(((u - u.mean()) * (v - v.mean())).mean() / (su * sv)) if su > 0 and sv > 0 else 0.0)
        out[k] = float(np.mean(cs))
    return out


def ks_normal(x: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between the values of x and N(0, 1)."""
    v = np.sort(np.asarray(x, dtype=np.float64).ravel())
    n = v.size
    cdf = normal_cdf(v)
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


def block_noise_stats(x_T: np.ndarray) -> dict[str, float]:
    """For one block (C, h, w) of x_T: KS distance to N(0, 1), mean, std and lag-1 spatial correlation."""
    x = np.asarray(x_T, dtype=np.float64)
    a, b = x[:, :, :-1].ravel(), x[:, :, 1:].ravel()
    c, d = x[:, :-1, :].ravel(), x[:, 1:, :].ravel()
    corr = 0.5 * (np.corrcoef(a, b)[0, 1] + np.corrcoef(c, d)[0, 1])
    return {"ks": ks_normal(x), "mean": float(x.mean()), "std": float(x.std()), "corr": float(corr)}


def block_smoothness(block8: np.ndarray) -> float:
    """Mean absolute difference of neighbouring pixels of an 8-bit block (C, h, w); small = smooth."""
    x = np.asarray(block8, dtype=np.float64)
    return float(0.5 * (np.abs(np.diff(x, axis=2)).mean() + np.abs(np.diff(x, axis=1)).mean()))
