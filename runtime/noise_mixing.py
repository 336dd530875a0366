"""Keyed mixing of the encrypted noise x_T (DESIGN.md "Keys and containers"): `mix_noise` and its twin
`unmix_noise`.

Why: exact DDIM inversion keeps each block's structure (x_T correlates with the whitened block, so a
Gaussian image model colours it back without any key), and its spread varies with the block's smoothness
and the image. Mixing turns x_T into noise that carries neither: R rounds of a keyed permutation of all
the image's values, keyed signs and an orthonormal Walsh-Hadamard transform on consecutive groups of 64,
so every output value is a +-1/sqrt(64^R) sum of 64^R values from all over the image (Gaussian by the
central limit theorem, whatever the blocks were); then a scale to unit RMS, whose factor travels with the
secret payload. The map is orthogonal up to that scale: Gaussian noise stays Gaussian (what N_i expects to
sample from), errors keep their size when unmixed, and unmixing is its transpose, exact to float rounding.
Permutations and signs come from a ChaCha20 keystream under HKDF(key, nonce, purpose), so each image's
map is fresh. numpy only (the device side).
"""
from __future__ import annotations

from functools import cache

import numpy as np

from .errors import InputError
from .keys import KeyStream, check_key, check_nonce

GROUP = 64
ROUNDS = 3
PURPOSE = "rdec-diffusion-xT-mix-v1"


@cache
def _hadamard() -> np.ndarray:
    """The orthonormal (symmetric, self-inverse) Walsh-Hadamard matrix of size GROUP, float64."""
    h = np.ones((1, 1))
    while h.shape[0] < GROUP:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(GROUP)


def _rounds(key: bytes, nonce: bytes, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per round: the permutation of the n values and the +-1 signs, drawn in a fixed order."""
    stream = KeyStream(check_key(key), check_nonce(nonce), PURPOSE)
    out = []
    for _ in range(ROUNDS):
        perm = stream.permutation(n)
        bits = np.unpackbits(stream.words(-(-n // 32)).view(np.uint8))[:n]
        out.append((perm, 1.0 - 2.0 * bits))
    return out


def _check(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise InputError(f"noise to mix must be floating point, got {x.dtype}")
    if x.size == 0 or x.size % GROUP:
        raise InputError(f"noise to mix must hold a positive multiple of {GROUP} values, got {x.size}")
    if not np.isfinite(x).all():
        raise InputError("noise to mix holds non-finite values")
    return x


def mix_noise(x_T: np.ndarray, key: bytes, nonce: bytes) -> tuple[np.ndarray, float]:
    """Keyed mixing of all values of one image's x_T (any shape, a multiple of 64 values), scaled to unit
    RMS. Returns (z, rms): z has x_T's shape and dtype; rms is needed, with the key and nonce, to unmix."""
    x = _check(x_T)
    v = x.astype(np.float64).ravel()
    rms = float(np.sqrt(np.mean(v * v)))
    if not rms > 0:
        raise InputError("noise to mix is all zeros")
    h = _hadamard()
    for perm, sign in _rounds(key, nonce, v.size):
        v = ((v[perm] * sign).reshape(-1, GROUP) @ h).ravel()
    return (v / rms).reshape(x.shape).astype(x.dtype), rms


def unmix_noise(z: np.ndarray, rms: float, key: bytes, nonce: bytes) -> np.ndarray:
    """The twin of `mix_noise`: x_T back from (z, rms) under the same key and nonce (z may carry errors,
    e.g. after lossy coding; they keep their size)."""
    x = _check(z)
    if not (isinstance(rms, (int, float, np.floating)) and np.isfinite(rms) and rms > 0):
        raise InputError(f"the noise scale must be a positive finite number, got {rms!r}")
    v = x.astype(np.float64).ravel() * float(rms)
    h = _hadamard()
    for perm, sign in reversed(_rounds(key, nonce, v.size)):
        u = np.empty_like(v)
        u[perm] = (v.reshape(-1, GROUP) @ h).ravel() * sign
        v = u
    return v.reshape(x.shape).astype(x.dtype)
