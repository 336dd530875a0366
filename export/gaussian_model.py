"""A stationary Gaussian model of 64x64 colour blocks, and the keyless attack it gives on x_T.

For Gaussian data x0 ~ N(mu, S), exact DDIM inversion (the probability-flow ODE of the ideal eps) ends at
x_T = S^(-1/2) (x0 - mu): the block *whitened*. Natural images are close to Gaussian in their second-order
statistics, so the trained outer model's x_T is largely the whitened block, which shows the block's edges,
and an attacker without any key can undo the whitening (colour x_T with S^(1/2)) to see the image.

The model: per-channel means, a PCA rotation of the three colours, and per PCA component a power spectrum
over the block's even-symmetric extension (128x128, i.e. a DCT-II basis: no wraparound edges at the block
border). `whiten` and `color` are exact inverses of each other. numpy only.
"""
from __future__ import annotations

import numpy as np

N = 64


def _mirror(z: np.ndarray) -> np.ndarray:
    """(..., 64, 64) -> (..., 128, 128): even-symmetric extension, continuous when taken periodically."""
    z = np.concatenate([z, z[..., ::-1]], axis=-1)
    return np.concatenate([z, z[..., ::-1, :]], axis=-2)


class StationaryGaussian:
    """Second-order statistics of (n, 3, 64, 64) blocks in [-1, 1]: `add` batches, then `fit`."""

    def __init__(self) -> None:
        self._n = 0
        self._sum = np.zeros(3)
        self._spec = np.zeros((3, 3, 2 * N, 2 * N), dtype=np.complex128)  # sum of F_c conj(F_d) (extension)

    def add(self, blocks: np.ndarray) -> "StationaryGaussian":
        b = np.asarray(blocks, dtype=np.float64)
        if b.ndim != 4 or b.shape[1:] != (3, N, N):
            raise ValueError(f"blocks must be (n, 3, {N}, {N}), got {b.shape}")
        f = np.fft.fft2(_mirror(b))
        self._n += b.shape[0]
        self._sum += b.sum(axis=(0, 2, 3))
        self._spec += np.einsum("nchw,ndhw->cdhw", f, f.conj())
        return self

    def fit(self) -> "StationaryGaussian":
        """Means, colour PCA, and the power spectrum of each PCA component over the blocks added."""
        if self._n == 0:
            raise ValueError("no blocks to fit")
        m = (2 * N) ** 2
        self.mu = self._sum / (self._n * N * N)
        # Parseval: sum over the extension's pixels of x_c x_d = (1/m) sum_f F_c conj(F_d), and the extension
        # holds every block pixel 4 times.
        cross = self._spec.sum(axis=(2, 3)).real / (4 * m)
        _, self.U = np.linalg.eigh(cross / (self._n * N * N) - np.outer(self.mu, self.mu))
        spec = self._spec.copy()
        spec[:, :, 0, 0] -= self._n * m * m * np.outer(self.mu, self.mu)  # the mean only moves the DC term
        power = np.einsum("ck,cdhw,dk->khw", self.U, spec, self.U).real / (self._n * m)
        # The extension has no component at the Nyquist row and column: those gains are 0 both ways.
        live = power > 1e-12 * power.max()
        self._gain_white = np.where(live, 1.0 / np.sqrt(np.where(live, power, 1.0)), 0.0)
        self._gain_color = np.where(live, np.sqrt(np.where(live, power, 0.0)), 0.0)
        return self

    def _filter(self, blocks: np.ndarray, gain: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """Rotate colours to PCA, scale every frequency of the extension by `gain`, rotate back."""
        z = np.einsum("cd,nchw->ndhw", self.U, np.asarray(blocks, dtype=np.float64) - shift[None, :, None, None])
        z = np.real(np.fft.ifft2(np.fft.fft2(_mirror(z)) * gain))[..., :N, :N]
        return np.einsum("cd,ndhw->nchw", self.U, z)

    def whiten(self, blocks: np.ndarray) -> np.ndarray:
        """S^(-1/2) (x - mu): what exact DDIM inversion gives under this model (unit variance per value)."""
        return self._filter(blocks, self._gain_white, self.mu)

    def color(self, white: np.ndarray) -> np.ndarray:
        """mu + S^(1/2) w, the inverse of `whiten`: the keyless attack when w is an encrypted x_T."""
        return self._filter(white, self._gain_color, np.zeros(3)) + self.mu[None, :, None, None]
