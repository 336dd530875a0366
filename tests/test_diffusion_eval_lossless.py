"""`rdec eval lossless` on fixture images with a tiny model whose eps is non-trivial; metrics sanity."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rdec.export import metrics as M
from rdec.export.config import load_config
from rdec.export.eval_lossless import run_eval_lossless
from rdec.export.modelfile import save_model_file
from rdec.export.networks import CondUNet, OuterModel
from rdec.runtime.cli import main

FIXTURES = Path(__file__).parent / "fixtures"

torch.set_num_threads(1)


def _wake_zero_layers(net: torch.nn.Module, std: float = 0.003) -> None:
    """Small random weights for the zero-initialised output layers, so eps is non-trivial."""
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0 and p.dim() > 1:
                p.normal_(0, std)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny outer model with randomised (small) output layers, saved like a trained model folder."""
    d = tmp_path_factory.mktemp("model")
    cfg = load_config("tiny")
    torch.manual_seed(0)
    m = OuterModel(cfg.encoder, cfg.unet)
    _wake_zero_layers(m.unet)
    save_model_file(d / "outer.pt", "outer", cfg, m.state_dict(), step=0)
    torch.manual_seed(1)
    inner = CondUNet(cfg.unet)
    _wake_zero_layers(inner)
    save_model_file(d / "inner.pt", "inner", cfg, inner.state_dict(), step=7)
    return d


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    for f in sorted(FIXTURES.glob("photo_*.png")):
        (d / f.name).write_bytes(f.read_bytes())
    return d


def test_eval_lossless_writes_report_and_refinement_helps(model_dir, images, tmp_path):
    out = tmp_path / "rep"
    res = run_eval_lossless(images, out, model=model_dir, steps=10, refine=6, threads=1, progress=False)
    for f in ("report.md", "grid.png", "smoothness.png", "results.json"):
        assert (out / f).is_file(), f
    R = json.loads((out / "results.json").read_text())
    assert R["steps"] == 10 and R["refine"] == 6 and len(R["images"]) == 2
    s = R["summary"]
    assert s["K6"]["psnr"] > s["K0"]["psnr"] + 10, s
    assert s["K6"]["psnr"] > 50
    assert [c["K"] for c in R["convergence"]] == list(range(7))
    conv = [c["max_err"] for c in R["convergence"]]
    assert conv[-1] < conv[2] < conv[0]
    blocks = sum(r["blocks"] for r in R["images"])
    assert blocks == 2 + 6  # 96x64 -> 2x1 blocks (padded), 192x128 -> 3x2
    assert sum(b["n"] for b in R["smoothness_bins"]) == blocks
    rep = (out / "report.md").read_text()
    assert "| K | PSNR (dB)" in rep and "Gaussian-CDF" in rep and "photo_96x64.png" in rep
    assert res["results"]["noise_ideal"]["entropy_cdf"] > 7.99
    a = R["attack"]
    assert -1 <= a["corr_white_min"] <= a["corr_white_mean"] <= 1 and 0 <= a["ssim"] <= 1 and a["psnr"] > 0
    assert all("attack" in r for r in R["images"]) and "Keyless attack" in rep
    z, ideal = R["mixed"], R["noise_ideal"]  # the keyed mixing that travels: noise, unlike x_T
    assert z["entropy_cdf"] > ideal["entropy_cdf"] - 0.03 and z["entropy_cdf"] > R["noise"]["entropy_cdf"]
    assert z["std"] == pytest.approx([1, 1, 1], abs=0.05) and z["mix_unmix_max_err"] < 1e-6
    assert all(abs(v) < 0.05 for v in z["corr"].values()) and R["mixed_attack"]["corr_white_max_abs"] < 0.1
    assert R["wrong_key"]["psnr"][1] < 20 < s["K6"]["psnr"] and "Key sensitivity" in rep
    i = R["inner"]
    assert R["inner_step"] == 7 and [v["K"] for v in i["inversion"]] == [0, 6] and "Inner pass" in rep
    assert i["inversion"][1]["z_max_err"] < i["inversion"][0]["z_max_err"]
    assert 0 <= i["y_in_range"] <= 1 and i["y_min"] <= i["y_max"]


def test_eval_cli_errors(model_dir, images, tmp_path, capsys):
    cases = [
        (["eval", "lossless", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--model",
          str(model_dir)], "no such data folder"),
        (["eval", "lossless", "--data", str(images), "--out", str(tmp_path / "o"), "--model",
          str(tmp_path / "nomodel")], "no such model folder"),
    ]
    bad = tmp_path / "badmodel"
    bad.mkdir()
    (bad / "outer.pt").write_bytes(b"garbage")
    cases.append((["eval", "lossless", "--data", str(images), "--out", str(tmp_path / "o"), "--model", str(bad)],
                  "not a readable checkpoint"))
    (tmp_path / "bad.key").write_text("not a key")
    cases.append((["eval", "lossless", "--data", str(images), "--out", str(tmp_path / "o"), "--model",
                   str(model_dir), "--key", str(tmp_path / "bad.key")], "not an rdec key file"))
    for argv, msg in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("rdec: error: ") and msg in err and "Traceback" not in err, err
    with pytest.raises(SystemExit):
        main(["eval", "lossless", "--data", str(images), "--out", "o", "--refine", "-1"])


def test_metrics_reference_values():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((256, 256, 3))
    assert M.channel_entropy8(M.to_8bit_cdf(g)) > 7.99
    assert 7.3 < M.channel_entropy8(M.to_8bit_linear(g)) < 7.5
    corr = M.adjacent_correlation(g)
    assert all(abs(v) < 0.02 for v in corr.values())
    smooth = np.cumsum(rng.standard_normal((64, 64, 3)), axis=1)
    assert M.adjacent_correlation(smooth)["H"] > 0.9
    assert M.ks_normal(rng.standard_normal(10000)) < 0.02 and M.ks_normal(rng.uniform(-1, 1, 10000)) > 0.1
    img = rng.integers(0, 256, (40, 50, 3)).astype(np.float64)
    assert M.psnr(img, img) == float("inf")
    assert M.psnr(img, img + 1) == pytest.approx(10 * np.log10(255 ** 2), abs=1e-9)
    assert M.ssim(img, img) == pytest.approx(1.0)
    assert M.ssim(img, rng.integers(0, 256, img.shape).astype(np.float64)) < 0.1
    assert M.entropy8(np.zeros(100, np.uint8)) == 0.0
    assert M.entropy8(np.arange(256, dtype=np.uint8)) == pytest.approx(8.0)


def test_eval_without_inner_model(model_dir, images, tmp_path):
    outer_only = tmp_path / "outer_only"
    outer_only.mkdir()
    (outer_only / "outer.pt").write_bytes((model_dir / "outer.pt").read_bytes())
    res = run_eval_lossless(images, tmp_path / "rep", model=outer_only, steps=2, refine=1, limit=1, threads=1,
                            progress=False)
    assert res["results"]["inner"] is None
    assert "Inner pass" not in (tmp_path / "rep" / "report.md").read_text()
