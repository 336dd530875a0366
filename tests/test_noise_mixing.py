"""Keyed mixing of x_T (rdec.runtime.noise_mixing): exact twins, orthogonal, Gaussianizing, keyed, pinned."""
import hashlib

import numpy as np
import pytest

from rdec.runtime.errors import InputError, KeyFileError
from rdec.runtime.noise_mixing import _rounds, mix_noise, unmix_noise

KEY, NONCE = bytes(range(32)), bytes(range(16))


def _structured(rng, n_blocks=4):
    """Noise like an inverted image's x_T: spread varying 0.5..2 across each block, a smooth shared
    component, and one block far from zero mean."""
    x = rng.standard_normal((n_blocks, 3, 64, 64)) * np.linspace(0.5, 2.0, 64)[None, None, :, None]
    x += 0.8 * np.sin(np.linspace(0, 6, 64))[None, None, None, :]
    x[0] += 2.0
    return x


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_unmix_is_the_exact_twin(dtype, tol):
    x = _structured(np.random.default_rng(0)).astype(dtype)
    z, rms = mix_noise(x, KEY, NONCE)
    assert z.shape == x.shape and z.dtype == x.dtype
    back = unmix_noise(z, rms, KEY, NONCE)
    assert back.shape == x.shape and back.dtype == x.dtype
    assert np.abs(back - x).max() < tol * np.abs(x).max()


def test_mixing_is_orthogonal_up_to_the_unit_rms_scale():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 64, 64)), rng.standard_normal((2, 3, 64, 64))
    za, ra = mix_noise(a, KEY, NONCE)
    zb, rb = mix_noise(b, KEY, NONCE)
    assert np.sqrt(np.mean(za ** 2)) == pytest.approx(1.0, abs=1e-12)
    assert ra == pytest.approx(np.sqrt(np.mean(a ** 2)), rel=1e-12)
    assert float(np.sum(za * zb)) * ra * rb == pytest.approx(float(np.sum(a * b)), rel=1e-9)
    # an error added to z comes back with the same size (scaled by the RMS)
    e = 1e-3 * rng.standard_normal(za.shape)
    err = unmix_noise(za + e, ra, KEY, NONCE) - a
    assert np.linalg.norm(err) == pytest.approx(np.linalg.norm(e) * ra, rel=1e-9)


def test_mixing_removes_structure_and_spread():
    x = _structured(np.random.default_rng(2))
    z, _ = mix_noise(x, KEY, NONCE)
    v = np.sort(z.ravel())
    from math import erf, sqrt
    cdf = np.array([0.5 * (1 + erf(t / sqrt(2))) for t in v])
    ks = max((np.arange(1, v.size + 1) / v.size - cdf).max(), (cdf - np.arange(v.size) / v.size).max())
    assert ks < 0.01  # exact N(0, 1) of this size: about 0.004
    per_block_std = z.reshape(z.shape[0], -1).std(axis=1)
    assert np.all(np.abs(per_block_std - 1) < 0.03), per_block_std  # x's blocks: 1.2 .. 2.4
    for axis in (2, 3):
        a, b = np.moveaxis(z, axis, -1)[..., :-1].ravel(), np.moveaxis(z, axis, -1)[..., 1:].ravel()
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.02
    assert abs(np.corrcoef(z.ravel(), x.ravel())[0, 1]) < 0.02


@pytest.mark.parametrize("scale", [1e-310, 1e300])
def test_any_finite_scale_round_trips(scale):
    x = np.random.default_rng(4).standard_normal(4096) * scale
    z, rms = mix_noise(x, KEY, NONCE)
    assert np.isfinite(z).all() and np.sqrt(np.mean(z ** 2)) == pytest.approx(1.0)
    assert rms == pytest.approx(np.sqrt(np.mean((x / scale) ** 2)) * scale, rel=1e-9)
    assert np.abs(unmix_noise(z, rms, KEY, NONCE) - x).max() <= 1e-12 * np.abs(x).max() + 1e-323


def test_the_map_depends_on_key_and_nonce():
    x = _structured(np.random.default_rng(3), n_blocks=2)
    z, rms = mix_noise(x, KEY, NONCE)
    assert np.array_equal(z, mix_noise(x, KEY, NONCE)[0])  # deterministic
    other_key = bytes([KEY[0] ^ 1]) + KEY[1:]
    other_nonce = NONCE[:-1] + bytes([NONCE[-1] ^ 0x80])
    for k, n in ((other_key, NONCE), (KEY, other_nonce)):
        assert abs(np.corrcoef(mix_noise(x, k, n)[0].ravel(), z.ravel())[0, 1]) < 0.03
        wrong = unmix_noise(z, rms, k, n)
        assert abs(np.corrcoef(wrong.ravel(), x.ravel())[0, 1]) < 0.03


def test_known_answer():
    """Files made by an earlier rdec must still unmix: the keyed draws are pinned."""
    h = hashlib.sha256()
    for perm, sign in _rounds(KEY, NONCE, 192):
        assert sorted(perm) == list(range(192)) and set(np.unique(sign)) == {-1.0, 1.0}
        h.update(perm.astype("<i8").tobytes())
        h.update(sign.astype("<f8").tobytes())
    assert h.hexdigest() == "d76f08ca887c5fd2ca03da0dfa6dfd254d42d8692cf4f134a1a37473fa775c61"
    z, rms = mix_noise(np.arange(192, dtype=np.float64) / 192 - 0.5, KEY, NONCE)
    assert rms == pytest.approx(0.2886829653028016, rel=1e-12)
    assert z[:4] == pytest.approx([-0.60439717, -0.36083413, -0.11276067, 0.75549646], abs=1e-7)


@pytest.mark.parametrize("bad, msg", [
    (np.zeros(64, dtype=np.int32), "floating point"),
    (np.ones(100), "multiple of 64"),
    (np.ones(0), "multiple of 64"),
    (np.full(64, np.nan), "non-finite"),
    (np.zeros(64), "all zeros"),
    ([[1.0, 2.0], [3.0]], "array of numbers"),
])
def test_bad_noise_is_refused(bad, msg):
    with pytest.raises(InputError, match=msg):
        mix_noise(bad, KEY, NONCE)


def test_bad_scale_key_and_nonce_are_refused():
    z, rms = mix_noise(np.ones(64), KEY, NONCE)
    for scale in (0.0, -1.0, float("nan"), float("inf"), "1", True, 10 ** 400, None):
        with pytest.raises(InputError, match="scale"):
            unmix_noise(z, scale, KEY, NONCE)
    assert np.array_equal(unmix_noise(z, np.int64(2), KEY, NONCE), unmix_noise(z, 2.0, KEY, NONCE))
    assert np.array_equal(unmix_noise(z, np.float32(2), KEY, NONCE), unmix_noise(z, 2, KEY, NONCE))
    with pytest.raises(InputError, match="overflows"):
        unmix_noise(np.full(64, 1e300), 1e300, KEY, NONCE)
    with pytest.raises(InputError, match="non-finite"):
        unmix_noise(np.full(64, np.inf), rms, KEY, NONCE)
    with pytest.raises(KeyFileError):
        mix_noise(z, KEY[:16], NONCE)
    with pytest.raises(InputError, match="nonce"):
        unmix_noise(z, rms, KEY, NONCE[:8])
