"""DDIM math: schedule, sampling/inversion twins (numpy and torch) and fixed-point refinement convergence."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from rdec.runtime import ddim as nd

torch.set_num_threads(1)


def test_schedule_shapes_and_values():
    b = nd.linear_betas()
    assert b.shape == (1000,) and b.dtype == np.float64
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    ab = nd.alphas_cumprod()
    assert np.all(np.diff(ab) < 0) and 0 < ab[-1] < 1e-4
    for s in (1, 7, 20, 50, 1000):
        ts = nd.timesteps(s)
        assert ts.shape == (s,) and ts.dtype == np.int64
        assert ts[-1] == 999 and np.all(np.diff(ts) > 0) and ts[0] >= 0
    assert list(nd.timesteps(4, spacing="uniform")) == [249, 499, 749, 999]
    ts = nd.timesteps(20)
    assert ts[0] == 0 and ts[-1] == 999
    sig = np.sqrt((1 - ab[ts]) / ab[ts])
    ratio = sig[1:] / sig[:-1]
    assert ratio.min() > 1.2 and ratio.max() < 2.5  # even steps in log noise-to-signal ratio
    with pytest.raises(ValueError):
        nd.timesteps(5, spacing="cosine")
    lv = nd.level_alphas(20)
    assert lv.shape == (21,) and lv[0] == 1.0 and lv[-1] == ab[-1]
    for bad in (0, 1001):
        with pytest.raises(ValueError):
            nd.timesteps(bad)


def test_step_coeffs_are_exact_inverses():
    rng = np.random.default_rng(0)
    x, eps = rng.standard_normal(100), rng.standard_normal(100)
    lv = nd.level_alphas(10)
    for i in range(1, 11):
        a, b = nd.step_coeffs(lv[i - 1], lv[i])
        up = a * x + b * eps
        a2, b2 = nd.step_coeffs(lv[i], lv[i - 1])
        np.testing.assert_allclose(a2 * up + b2 * eps, x, rtol=0, atol=1e-12)


def _toy_eps(seed=0, scale=0.6):
    """A smooth nonlinear eps(x, t, c) in numpy (float64) with moderate Lipschitz constant."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((48, 48)) / np.sqrt(48)

    def eps(x, t, c):
        return scale * np.tanh(x @ w + 0.001 * t + c)

    return eps


def test_numpy_refinement_converges_to_float64_precision():
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-1, 1, (4, 48))
    c = rng.standard_normal((4, 1)) * 0.1
    eps = _toy_eps()
    errs = []
    for k in (0, 1, 2, 4, 8, 40):
        xT = nd.ddim_invert(eps, x0, c, 20, refine=k)
        errs.append(np.abs(nd.ddim_sample(eps, xT, c, 20) - x0).max())
    assert all(e2 < e1 for e1, e2 in zip(errs[:4], errs[1:5])), errs
    assert errs[0] > 1e-3  # plain DDIM inversion is not exact
    assert errs[-1] < 1e-10, errs


def test_relaxed_and_plain_refinement_share_the_fixed_point():
    rng = np.random.default_rng(2)
    x0 = rng.uniform(-1, 1, (3, 48))
    c = np.zeros((3, 1))
    toy = _toy_eps(seed=1, scale=0.3)
    ab = nd.alphas_cumprod()
    k = np.sqrt(1 - ab) / (ab * 0.25 + 1 - ab)  # exact eps of N(0, 0.5^2) data: a denoiser-like eps

    def eps(x, t, cc):
        return k[t] * x + toy(x, t, cc)

    errs = {}
    for relax in (False, True):
        for K in (3, 80):
            xT = nd.ddim_invert(eps, x0, c, 12, refine=K, relax=relax)
            errs[relax, K] = np.abs(nd.ddim_sample(eps, xT, c, 12) - x0).max()
            if K == 80:
                errs[relax] = xT
    np.testing.assert_allclose(errs[True], errs[False], rtol=0, atol=1e-10)
    assert errs[True, 80] < 1e-10 and errs[False, 80] < 1e-10
    assert errs[True, 3] < errs[False, 3], errs
    w = nd.relax_weights(12)
    assert w.shape == (12,) and np.all(w >= 1.0) and np.all(w <= 4 / 3 + 1e-12)


def test_inversion_with_zero_eps_is_scaling():
    x0 = np.linspace(-1, 1, 12).reshape(3, 4)
    xT = nd.ddim_invert(lambda x, t, c: np.zeros_like(x), x0, None, 10, refine=2)
    np.testing.assert_allclose(xT, np.sqrt(nd.alphas_cumprod()[-1]) * x0, rtol=1e-12)
    with pytest.raises(ValueError):
        nd.ddim_invert(lambda x, t, c: x, x0, None, 10, refine=-1)


def _random_tiny_unet(dtype=torch.float64, seed=0, out_std=0.005):
    """The tiny conditional UNet with its zero-initialised output layers randomised (so eps is non-trivial)."""
    from rdec.export.config import load_config
    from rdec.export.networks import CondUNet

    torch.manual_seed(seed)
    cfg = load_config("tiny")
    net = CondUNet(cfg.unet)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.abs().sum() == 0 and p.dim() > 1:
                p.normal_(0, out_std)
    return cfg, net.to(dtype).eval()


def _model_like(net, s=0.5):
    """eps = the exact eps of N(0, s^2) data plus the random UNet: keeps x_t at unit scale like a trained model."""
    ab = torch.from_numpy(nd.alphas_cumprod())
    k = (1 - ab).sqrt() / (ab * s * s + 1 - ab)

    def eps(x, t, c):
        return k[t].to(x.dtype).view(-1, 1, 1, 1) * x + net(x, t, c)

    return eps


def test_torch_refinement_with_random_unet_reaches_float_precision():
    from rdec.export.ddim import ddim_invert, ddim_sample

    cfg, unet = _random_tiny_unet()
    net = _model_like(unet)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1
    c = torch.randn(2, cfg.unet.c_dim, generator=g, dtype=torch.float64)
    errs = []
    for k in (0, 1, 3, 30):
        xT = ddim_invert(net, x0, c, 20, refine=k)
        assert xT.shape == x0.shape and xT.dtype == torch.float64
        errs.append((ddim_sample(net, xT, c, 20) - x0).abs().max().item())
    assert errs[0] > 1e-4, errs
    assert errs[0] > errs[1] > errs[2] > errs[3], errs
    assert errs[3] < 1e-9, errs
    # float32: the same network reaches float32 precision
    net32 = _model_like(unet.float())
    xT = ddim_invert(net32, x0.float(), c.float(), 20, refine=30)
    assert xT.dtype == torch.float32
    assert (ddim_sample(net32, xT, c.float(), 20) - x0.float()).abs().max().item() < 1e-4


def test_torch_and_numpy_twins_agree():
    from rdec.export.ddim import ddim_invert, ddim_sample

    cfg, unet = _random_tiny_unet(seed=3)
    net = _model_like(unet)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1
    c = torch.randn(2, cfg.unet.c_dim, generator=g, dtype=torch.float64)

    def eps_np(x, t, cc):
        with torch.no_grad():
            tv = torch.full((x.shape[0],), t, dtype=torch.long)
            return net(torch.from_numpy(x), tv, torch.from_numpy(cc)).numpy()

    for k, relax in ((0, False), (2, True), (2, False)):
        xt_t = ddim_invert(net, x0, c, 8, refine=k, relax=relax).numpy()
        xt_n = nd.ddim_invert(eps_np, x0.numpy(), c.numpy(), 8, refine=k, relax=relax)
        np.testing.assert_allclose(xt_t, xt_n, rtol=0, atol=1e-12)
    back_t = ddim_sample(net, torch.from_numpy(xt_n), c, 8).numpy()
    back_n = nd.ddim_sample(eps_np, xt_n, c.numpy(), 8)
    np.testing.assert_allclose(back_t, back_n, rtol=0, atol=1e-12)


def test_q_sample_matches_schedule():
    from rdec.export.ddim import Schedule

    s = Schedule()
    x0, n = torch.ones(3, 2), torch.full((3, 2), 2.0, dtype=torch.float64)
    t = torch.tensor([0, 500, 999])
    out = s.q_sample(x0.double(), t, n)
    ab = nd.alphas_cumprod()[[0, 500, 999]]
    np.testing.assert_allclose(out[:, 0].numpy(), np.sqrt(ab) + 2 * np.sqrt(1 - ab), rtol=1e-12)


def test_runtime_ddim_does_not_import_torch():
    code = "import sys, rdec.runtime.ddim as d; d.ddim_sample; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
