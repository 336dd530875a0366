"""Keyed mixing of the encrypted noise x_T (DESIGN.md "Keys and containers"): `mix_noise` and its twin
`unmix_noise`.

Why: exact DDIM inversion keeps each block's structure (x_T correlates with the whitened block, so a
Gaussian image model colours it back without any key), and its spread varies with the block's smoothness
and the image. Mixing turns x_T into noise that carries neither: R rounds of an orthonormal Walsh-Hadamard
transform on consecutive groups of 64 values, then a keyed permutation of all the image's values and keyed
signs (so the last step is a keyed one), so every output value is a signed sum of up to 64^R values from
all over the image (close to Gaussian by the central limit theorem wherever no few values dominate, as in
x_T); then a scale to unit RMS, whose factor travels with the secret payload. The map is orthogonal up to
that scale: Gaussian noise stays Gaussian (what N_i expects to sample from), errors keep their size when
unmixed, and unmixing is its transpose, exact to float rounding.
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


def _check(x) -> np.ndarray:
    try:
        x = np.asarray(x)
    except (ValueError, TypeError) as e:
        raise InputError(f"noise to mix must be an array of numbers: {e}") from None
    if x.dtype.kind != "f":
        raise InputError(f"noise to mix must be floating point, got {x.dtype}")
    if x.size == 0 or x.size % GROUP:
        raise InputError(f"noise to mix must hold a positive multiple of {GROUP} values, got {x.size}")
    if not np.isfinite(x).all():
        raise InputError("noise to mix holds non-finite values")
    return x


def _check_scale(rms) -> float:
    if isinstance(rms, (bool, np.bool_)) or not isinstance(rms, (int, float, np.integer, np.floating)):
        raise InputError(f"the noise scale must be a positive finite number, got {rms!r}")
    try:
        r = float(rms)
    except OverflowError:
        r = float("inf")
    if not (np.isfinite(r) and r > 0):
        raise InputError(f"the noise scale must be a positive finite number, got {rms!r}")
    return r


def mix_noise(x_T: np.ndarray, key: bytes, nonce: bytes) -> tuple[np.ndarray, float]:
    """Keyed mixing of all values of one image's x_T (any shape, a multiple of 64 values), scaled to unit
    RMS. Returns (z, rms): z has x_T's shape and dtype; rms is needed, with the key and nonce, to unmix."""
    x = _check(x_T)
    v = x.astype(np.float64).ravel()
    peak = float(np.abs(v).max())
    if peak == 0:
        raise InputError("noise to mix is all zeros")
    v = v / peak  # mixing and the RMS in [1/sqrt(n), 1]: no overflow or underflow, whatever the scale of x_T
    h = _hadamard()
    for perm, sign in _rounds(key, nonce, v.size):
        v = (v.reshape(-1, GROUP) @ h).ravel()[perm] * sign
    rms_unit = float(np.sqrt(np.mean(v * v)))
    return (v / rms_unit).reshape(x.shape).astype(x.dtype), peak * rms_unit


def unmix_noise(z: np.ndarray, rms: float, key: bytes, nonce: bytes) -> np.ndarray:
    """The twin of `mix_noise`: x_T back from (z, rms) under the same key and nonce (z may carry errors,
    e.g. after lossy coding; they keep their size)."""
    x = _check(z)
    scale = _check_scale(rms)
    v = x.astype(np.float64).ravel()
    h = _hadamard()
    for perm, sign in reversed(_rounds(key, nonce, v.size)):
        u = np.empty_like(v)
        u[perm] = v * sign
        v = (u.reshape(-1, GROUP) @ h).ravel()
    with np.errstate(over="ignore", invalid="ignore"):
        v = v * scale
        out = v.reshape(x.shape).astype(x.dtype)
    if not np.isfinite(out).all():
        raise InputError("unmixed noise overflows its floating-point type (z or its scale is far too large)")
    return out
