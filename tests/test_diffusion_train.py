"""Training stages: loss goes down, exact resume, checkpoint round trip, stage 2 freezing, DDP (world size 1)
and typed CLI errors. Uses the `tiny` config and small synthetic images (no ../shared needed)."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from rdec.export.config import CONFIG_DIR, load_config
from rdec.export.ddim import Schedule
from rdec.export.modelfile import load_inner, load_outer, publish_model, safe_load
from rdec.export.train import read_loss_csv, train
from rdec.runtime.cli import main
from rdec.runtime.errors import FormatError, InputError

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Smooth synthetic photos (gradients + blobs) and the repository fixture photos."""
    d = tmp_path_factory.mktemp("train_images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128] / 64.0
    for i in range(3):
        f = [np.sin(xx * rng.uniform(1, 4) + yy * rng.uniform(1, 4) + rng.uniform(0, 6)) for _ in range(3)]
        img = (np.stack(f, -1) * 100 + 128).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"synth{i}.png")
    for f in FIXTURES.glob("photo_*.png"):
        (d / f.name).write_bytes(f.read_bytes())
    return d


def _fixed_loss(model, stage_enc, cfg, data_dir, n=32):
    """L_simple on a fixed batch (fixed t and noise) for a before/after comparison."""
    from rdec.export.data import CropSampler

    x0 = torch.from_numpy(CropSampler(data_dir, seed=123).batch(0, n))
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, 1000, (n,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    x_t = Schedule().q_sample(x0, t, noise)
    with torch.no_grad():
        c = stage_enc(x0)
        return F.mse_loss(model(x_t, t, c), noise).item()


def test_stage1_lowers_loss_and_writes_outputs(data_dir, tmp_path):
    cfg = load_config("tiny")
    out = tmp_path / "run"
    res = train("tiny", 1, data_dir, out, steps=40, device="cpu", threads=1, progress=False)
    assert res["step"] == 40
    for f in ("stage1_ckpt.pt", "stage1_loss.csv", "stage1_loss.png", "outer.pt"):
        assert (out / f).is_file(), f
    rows = read_loss_csv(out / "stage1_loss.csv")
    assert [r["step"] for r in rows] == list(range(5, 41, 5))
    _, trained, step = load_outer(out / "outer.pt")
    assert step == 40
    torch.manual_seed(cfg.stages[1].seed)
    from rdec.export.networks import OuterModel

    init = OuterModel(cfg.encoder, cfg.unet).eval()
    before = _fixed_loss(init.unet, init.enc, cfg, data_dir)
    raw = OuterModel(cfg.encoder, cfg.unet).eval()
    raw.load_state_dict(safe_load(out / "stage1_ckpt.pt")["model"])
    after_raw = _fixed_loss(raw.unet, raw.enc, cfg, data_dir)
    after_ema = _fixed_loss(trained.unet, trained.enc, cfg, data_dir)
    assert after_raw < 0.95 * before and after_ema < 0.97 * before, (before, after_raw, after_ema)


def test_resume_is_exact_and_checkpoint_round_trips(data_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train("tiny", 1, data_dir, a, steps=12, device="cpu", threads=1, progress=False)
    train("tiny", 1, data_dir, b, steps=6, device="cpu", threads=1, progress=False)
    with pytest.raises(InputError, match="--resume"):
        train("tiny", 1, data_dir, b, steps=12, device="cpu", threads=1, progress=False)
    train("tiny", 1, data_dir, b, steps=12, resume=True, device="cpu", threads=1, progress=False)
    ca, cb = safe_load(a / "stage1_ckpt.pt"), safe_load(b / "stage1_ckpt.pt")
    assert ca["step"] == cb["step"] == 12
    for k in ca["model"]:
        torch.testing.assert_close(ca["model"][k], cb["model"][k], rtol=0, atol=0)
        torch.testing.assert_close(ca["ema"][k], cb["ema"][k], rtol=0, atol=0)
    assert [r["step"] for r in read_loss_csv(b / "stage1_loss.csv")] == [5, 6, 10, 12]
    # the exported model file holds exactly the EMA weights
    _, m, _ = load_outer(a / "outer.pt")
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, ca["ema"][k], rtol=0, atol=0)


def test_wall_time_limit_stops_cleanly_and_resumes(data_dir, tmp_path):
    out = tmp_path / "run"
    res = train("tiny", 1, data_dir, out, steps=1000, device="cpu", threads=1, progress=False, max_minutes=1e-6)
    assert res["step"] == 5  # the first log interval: time is checked where every rank agrees on it
    assert safe_load(out / "stage1_ckpt.pt")["step"] == 5 and load_outer(out / "outer.pt")[2] == 5
    assert [r["step"] for r in read_loss_csv(out / "stage1_loss.csv")] == [5]
    res = train("tiny", 1, data_dir, out, steps=12, resume=True, device="cpu", threads=1, progress=False)
    assert res["step"] == 12 and [r["step"] for r in read_loss_csv(out / "stage1_loss.csv")] == [5, 10, 12]
    with pytest.raises(InputError, match="max-minutes"):
        train("tiny", 1, data_dir, tmp_path / "x", device="cpu", progress=False, max_minutes=0)


def test_divergence_is_a_typed_error_and_nothing_diverged_is_saved(data_dir, tmp_path, monkeypatch, capsys):
    import rdec.export.train as tr

    calls = {"loss": 0, "ema": 0}
    real_mse, real_ema = F.mse_loss, tr._ema_update

    def mse(a, b):  # finite for 7 steps, then NaN
        calls["loss"] += 1
        return real_mse(a, b) * (float("nan") if calls["loss"] > 7 else 1.0)

    monkeypatch.setattr(tr.F, "mse_loss", mse)
    out = tmp_path / "run"
    argv = ["train", "--config", "tiny", "--stage", "1", "--data", str(data_dir), "--out", str(out), "--steps", "20",
            "--device", "cpu", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("rdec: error: training diverged (loss nan before step 10); nothing after step 0 was "
                          "saved: start again") and "Traceback" not in err, err
    assert not (out / "stage1_ckpt.pt").exists() and not (out / "outer.pt").exists()  # first save was due at 10

    # weights that went bad in the very update before a save (its loss was still finite) are not saved either
    monkeypatch.setattr(tr.F, "mse_loss", real_mse)

    def ema(e, m, decay):
        calls["ema"] += 1
        if calls["ema"] == 20:
            next(m.parameters()).detach().fill_(float("nan"))
        real_ema(e, m, decay)

    monkeypatch.setattr(tr, "_ema_update", ema)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "weights after step 20 are not finite" in err and "(step 10) with a lower lr" in err, err
    assert safe_load(out / "stage1_ckpt.pt")["step"] == 10 and load_outer(out / "outer.pt")[2] == 10
    # ... and the advice works: the learning rate may change on resume (a config built on tiny)
    monkeypatch.setattr(tr, "_ema_update", real_ema)
    lower = tmp_path / "lower.toml"
    lower.write_text(f'base = "{CONFIG_DIR / "tiny.toml"}"\nname = "tiny"\n[stage1]\nlr = 1e-3\n')
    assert main(argv[:2] + [str(lower)] + argv[3:] + ["--resume"]) == 0
    rows = read_loss_csv(out / "stage1_loss.csv")
    assert safe_load(out / "stage1_ckpt.pt")["step"] == 20 and [r["lr"] for r in rows][-1] == 1e-3


def test_stage2_freezes_encoder(data_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InputError, match="stage-1 model"):
        train("tiny", 2, data_dir, out, steps=2, device="cpu", threads=1, progress=False)
    train("tiny", 1, data_dir, out, steps=5, device="cpu", threads=1, progress=False)
    before = (out / "outer.pt").read_bytes()
    train("tiny", 2, data_dir, out, steps=10, device="cpu", threads=1, progress=False)
    assert (out / "outer.pt").read_bytes() == before
    cfg, inner, step = load_inner(out / "inner.pt")
    assert step == 10 and cfg.name == "tiny"
    assert any(p.abs().sum() > 0 for n, p in inner.named_parameters() if n.startswith("out."))
    with pytest.raises(FormatError, match="not an outer"):
        load_outer(out / "inner.pt")
    # publishing keeps fp16 EMA weights that load back as float32 close to the originals
    from rdec.export.modelfile import publish_model

    written = publish_model(out, tmp_path / "pub", load_config("tiny"))
    assert {p.name for p in written} >= {"outer.pt", "inner.pt", "stage1_loss.csv", "stage2_loss.png"}
    assert all(v.dtype == torch.float16 for v in safe_load(tmp_path / "pub" / "inner.pt")["state_dict"].values()
               if v.is_floating_point())
    _, pub, _ = load_inner(tmp_path / "pub" / "inner.pt")
    for (k, v), (_, w) in zip(inner.state_dict().items(), pub.state_dict().items()):
        assert w.dtype == torch.float32
        torch.testing.assert_close(w, v, rtol=1e-3, atol=1e-4)


def test_resume_refuses_a_changed_config_and_failed_runs_leave_no_folder(data_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(InputError, match="no such data folder"):
        train("tiny", 1, tmp_path / "nothing", out, steps=2, device="cpu", threads=1, progress=False)
    assert not out.exists()
    train("tiny", 1, data_dir, out, steps=4, device="cpu", threads=1, progress=False)
    text = (CONFIG_DIR / "tiny.toml").read_text()
    changed = tmp_path / "changed.toml"
    changed.write_text(text.replace("seed = 1", "seed = 7"))
    assert "seed = 7" in changed.read_text()
    with pytest.raises(InputError, match="stage1.seed"):
        train(changed, 1, data_dir, out, steps=8, resume=True, device="cpu", threads=1, progress=False)
    longer = tmp_path / "longer.toml"  # run length and logging may change on resume, defaults may be spelled out
    longer.write_text(text.replace("log_every = 5", "log_every = 2").replace("[unet]\n", '[unet]\nparam = "eps"\n'))
    assert 'param = "eps"' in longer.read_text()
    assert train(longer, 1, data_dir, out, steps=8, resume=True, device="cpu", threads=1, progress=False)["step"] == 8
    # stage 2 resumes only against the frozen encoder it started with
    train("tiny", 2, data_dir, out, steps=2, device="cpu", threads=1, progress=False)
    train("tiny", 1, data_dir, out, steps=10, resume=True, device="cpu", threads=1, progress=False)
    with pytest.raises(InputError, match="not the stage-1 model"):
        train("tiny", 2, data_dir, out, steps=4, resume=True, device="cpu", threads=1, progress=False)


def test_model_folders_are_published_whole_and_checked_as_a_pair(data_dir, tmp_path):
    from rdec.export.modelfile import load_model_dir

    a = tmp_path / "a"
    train("tiny", 1, data_dir, a, steps=2, device="cpu", threads=1, progress=False)
    train("tiny", 2, data_dir, a, steps=2, device="cpu", threads=1, progress=False)
    raw = load_config("tiny").raw
    other = raw | {"encoder": raw["encoder"] | {"c_dim": 8}}
    b = tmp_path / "b"
    b.mkdir()
    from rdec.export.config import config_from_dict
    from rdec.export.modelfile import save_model_file
    from rdec.export.networks import CondUNet

    cfg_b = config_from_dict(other)
    save_model_file(b / "inner.pt", "inner", cfg_b, CondUNet(cfg_b.inner_unet).state_dict(), 1)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "outer.pt").write_bytes((a / "outer.pt").read_bytes())
    (mixed / "inner.pt").write_bytes((b / "inner.pt").read_bytes())
    with pytest.raises(FormatError, match="does not belong"):
        load_model_dir(mixed)
    assert load_model_dir(a)[3] is not None
    # a run whose inner.pt does not fit the config publishes nothing at all
    (a / "inner.pt").write_bytes((b / "inner.pt").read_bytes())
    with pytest.raises(FormatError, match="different UNet"):
        publish_model(a, tmp_path / "pub", load_config("tiny"))
    assert not (tmp_path / "pub").exists()


def test_bad_checkpoint_files(tmp_path):
    bad = tmp_path / "outer.pt"
    bad.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(FormatError):
        load_outer(bad)
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(FormatError, match="not an rdec"):
        load_outer(tmp_path / "other.pt")
    with pytest.raises(InputError, match="no such file"):
        load_outer(tmp_path / "missing.pt")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_world_size_one_matches_single_process(data_dir, tmp_path):
    env = dict(os.environ, RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(_free_port()))
    cmd = [sys.executable, "-m", "rdec.runtime.cli", "train", "--config", "tiny", "--stage", "1", "--data",
           str(data_dir), "--out", str(tmp_path / "ddp"), "--steps", "6", "--device", "cpu", "--threads", "1",
           "--no-progress"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    train("tiny", 1, data_dir, tmp_path / "single", steps=6, device="cpu", threads=1, progress=False)
    a, b = safe_load(tmp_path / "ddp" / "stage1_ckpt.pt"), safe_load(tmp_path / "single" / "stage1_ckpt.pt")
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6)


def test_cli_errors_are_one_line(data_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    badcfg = tmp_path / "bad.toml"
    badcfg.write_text("[ddim]\nT = 1000\n")
    cases = [
        (["train", "--config", "tiny", "--stage", "1", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
         "no such data folder"),
        (["train", "--config", "tiny", "--stage", "1", "--data", str(empty), "--out", str(tmp_path / "o")],
         "no images"),
        (["train", "--config", str(badcfg), "--stage", "1", "--data", str(data_dir), "--out", str(tmp_path / "o")],
         "missing section"),
        (["train", "--config", "tiny", "--stage", "1", "--data", str(data_dir), "--out", str(tmp_path / "o"),
          "--device", "tpu"], "unknown device"),
    ]
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    (kodak / "a.png").write_bytes((FIXTURES / "photo_96x64.png").read_bytes())
    cases.append((["train", "--config", "tiny", "--stage", "1", "--data", str(kodak), "--out", str(tmp_path / "o")],
                  "evaluation sets"))
    for argv, msg in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("rdec: error: ") and msg in err, err
        assert "Traceback" not in err


def test_bad_max_minutes_is_a_usage_error(data_dir, tmp_path, capsys):
    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit) as e:
            main(["train", "--config", "tiny", "--stage", "1", "--data", str(data_dir), "--out", str(tmp_path / "o"),
                  "--max-minutes", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("rdec: error: argument --max-minutes") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_train_help_mentions_stages(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--stage" in out and "--resume" in out and "torchrun" in out


def test_stage2_trains_a_v_parameterised_inner_model(data_dir, tmp_path):
    text = (CONFIG_DIR / "tiny.toml").read_text() + '\n[inner]\nparam = "v"\n'
    (tmp_path / "v.toml").write_text(text)
    out = tmp_path / "run"
    train(tmp_path / "v.toml", 1, data_dir, out, steps=3, device="cpu", threads=1, progress=False)
    res = train(tmp_path / "v.toml", 2, data_dir, out, steps=10, device="cpu", threads=1, progress=False)
    assert res["step"] == 10
    cfg, inner, _ = load_inner(out / "inner.pt")
    assert cfg.inner_unet.param == "v" and inner.cfg.param == "v"
    written = publish_model(out, tmp_path / "pub", load_config(tmp_path / "v.toml"))
    assert {p.name for p in written} >= {"outer.pt", "inner.pt"}
    with pytest.raises(FormatError, match="different UNet"):
        publish_model(out, tmp_path / "pub2", load_config("tiny"))
