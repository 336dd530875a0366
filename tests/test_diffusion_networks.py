"""Networks, configs and block layout of the diffusion side: shapes, dtypes, config validation."""
import os
import re
import tomllib

import numpy as np
import pytest
import torch

from rdec.export.blocks import merge_blocks, split_blocks
from rdec.export.config import CONFIG_DIR, config_from_dict, load_config
from rdec.export.networks import CondUNet, OuterModel, SemanticEncoder, count_params
from rdec.runtime.errors import InputError, RdecError

torch.set_num_threads(1)


def _wake_zero_layers(net: torch.nn.Module, std: float = 0.05) -> None:
    """Random weights for the zero-initialised output layers, so the untrained net's output depends on x, t, c."""
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0 and p.dim() > 1:
                p.normal_(0, std)


@pytest.mark.parametrize("name", ["tiny", "small", "paper", "small_vo", "small_gpu"])
def test_shipped_configs_validate(name):
    cfg = load_config(CONFIG_DIR / f"{name}.toml")
    assert cfg.name == name
    assert cfg.unet.c_dim == cfg.encoder.c_dim
    assert set(cfg.stages) == {1, 2}
    assert cfg.ddim.T == 1000 and 1 <= cfg.ddim.steps <= 1000 and cfg.ddim.refine >= 0


def test_tiny_shapes_and_dtypes():
    cfg = load_config("tiny")
    m = OuterModel(cfg.encoder, cfg.unet).eval()
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    c = m.enc(x)
    assert c.shape == (3, cfg.encoder.c_dim) and c.dtype == torch.float32
    eps = m.unet(x, torch.tensor([0, 500, 999]), c)
    assert eps.shape == x.shape and eps.dtype == torch.float32
    assert torch.all(eps == 0)  # zero-initialised output layer: the untrained net predicts eps = 0
    m64 = OuterModel(cfg.encoder, cfg.unet).double()
    assert m64(x.double(), x.double(), torch.tensor([1, 2, 3])).dtype == torch.float64


def test_condition_and_time_change_the_output():
    cfg = load_config("tiny")
    torch.manual_seed(0)
    net = CondUNet(cfg.unet).eval()
    _wake_zero_layers(net)
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        c1, c2 = torch.randn(1, cfg.unet.c_dim), torch.randn(1, cfg.unet.c_dim)
        t = torch.tensor([100])
        assert not torch.allclose(net(x, t, c1), net(x, t, c2))
        assert not torch.allclose(net(x, t, c1), net(x, torch.tensor([900]), c1))


def test_small_model_size_and_batch_independence():
    cfg = load_config("small")
    enc, unet = SemanticEncoder(cfg.encoder).eval(), CondUNet(cfg.unet).eval()
    n = count_params(enc) + 2 * count_params(unet)
    assert n * 2 < 20e6  # fp16 EMA weights of Enc + N_o + N_i stay well under 20 MB
    torch.manual_seed(0)
    _wake_zero_layers(unet)
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        c = enc(x)
        both = unet(x, torch.tensor([10, 20]), c)
        one = unet(x[1:], torch.tensor([20]), c[1:])
    assert both.shape == (2, 3, 64, 64)
    torch.testing.assert_close(both[1:], one, rtol=1e-4, atol=1e-5)


def _write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_bad_configs_raise_typed_errors(tmp_path):
    good = (CONFIG_DIR / "tiny.toml").read_text()
    with pytest.raises(InputError, match="no such config"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(_write(tmp_path, "this is = = not toml"))
    with pytest.raises(InputError, match="unknown section.*unetx"):
        load_config(_write(tmp_path, good.replace("[unet]", "[unetx]")))
    raw = tomllib.loads(good)
    del raw["unet"]
    with pytest.raises(InputError, match=r"missing section \[unet\]"):
        config_from_dict(raw)
    with pytest.raises(InputError, match="unknown key"):
        load_config(_write(tmp_path, good.replace("[encoder]\n", "[encoder]\nfoo = 1\n")))
    with pytest.raises(InputError, match="bad value"):
        load_config(_write(tmp_path, good.replace("ch = 8\nmults = [1, 2]\nnum_res", 'ch = "x"\nmults = [1, 2]\nnum_res')))
    with pytest.raises(InputError, match="groups"):
        load_config(_write(tmp_path, good.replace("groups = 4", "groups = 3")))
    with pytest.raises(RdecError):
        load_config(tmp_path)


def test_base_config_replaces_keys_section_by_section(tmp_path):
    small = load_config("small")
    gpu = load_config(CONFIG_DIR / "small_gpu.toml")
    assert (gpu.unet, gpu.inner_unet, gpu.encoder, gpu.ddim) == (small.unet, small.inner_unet, small.encoder, small.ddim)
    assert gpu.stages[1].batch == 128 and gpu.stages[1].lr == small.stages[1].lr
    assert "base" not in gpu.raw and gpu.raw["unet"] == small.raw["unet"]  # stored self-contained
    (tmp_path / "a.toml").write_text('base = "b.toml"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(InputError, match="cycle"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('base = "missing.toml"\n')
    with pytest.raises(InputError, match="no such config"):
        load_config(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text("base = 3\n")
    with pytest.raises(InputError, match="base must be"):
        load_config(tmp_path / "d.toml")
    (tmp_path / "e.toml").write_text(f'base = "{CONFIG_DIR / "tiny.toml"}"\n[unet]\nheads = 3\n')
    with pytest.raises(InputError, match="heads=3"):  # the merged result is validated
        load_config(tmp_path / "e.toml")
    (tmp_path / "f.toml").write_text('base = "a\\u0000b.toml"\n')  # a NUL byte in the name
    (tmp_path / "loop.toml").symlink_to(tmp_path / "loop.toml")
    (tmp_path / "g.toml").write_text('base = "loop.toml"\n')
    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "h.toml").write_text('base = "fifo.toml"\n')  # would block if opened
    (tmp_path / "i.toml").write_text('base = "tiny"\nunet = 3\n')
    for name, msg in (("f", "cannot find its base"), ("g", "cannot find its base"), ("h", "not a regular config file"), ("i", "must be a section")):
        with pytest.raises(InputError, match=msg):
            load_config(tmp_path / f"{name}.toml")
    (tmp_path / "j.toml").write_text('base = "tiny"\n[stage1]\nlr = 2.0\n')  # a bare name, as for --config
    with pytest.raises(InputError, match="lr <= 1"):
        load_config(tmp_path / "j.toml")
    (tmp_path / "k.toml").write_text('base = "tiny"\n')
    assert load_config(tmp_path / "k.toml").name == str(tmp_path / "k.toml")  # its own name, not tiny's


@pytest.mark.parametrize("section,key,value,message", [
    ("encoder", "mults", 2, "must be a list"),
    ("encoder", "mults", [], "must not be empty"),
    ("encoder", "ch", 0, "ch must be >= 1"),
    ("unet", "heads", 3, "heads=3 must divide"),
    ("unet", "heads", 0, "heads must be >= 1"),
    ("unet", "dropout", 1.5, "dropout"),
    ("unet", "attn_res", [5], "attn_res"),
    ("inner", "heads", 3, "inner.heads=3"),
    ("stage1", "ema", 5.0, "ema"),
    ("stage2", "lr", 0.0, "lr"),
])
def test_config_values_that_no_network_can_take_are_refused(section, key, value, message):
    """Checked when the config loads, before any network is built (else torch fails deep inside)."""
    raw = tomllib.loads((CONFIG_DIR / "tiny.toml").read_text())
    raw.setdefault(section, {})[key] = value
    with pytest.raises(InputError, match=message):
        config_from_dict(raw)


@pytest.mark.parametrize("h,w", [(64, 64), (100, 70), (128, 192), (30, 20)])
def test_blocks_round_trip(h, w):
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    b, layout = split_blocks(img)
    assert b.shape == (layout[2] * layout[3], 3, 64, 64)
    assert layout[2] == -(-h // 64) and layout[3] == -(-w // 64)
    np.testing.assert_array_equal(merge_blocks(b, layout), img)


def test_unet_and_encoder_export_to_onnx_and_match(tmp_path):
    """Export-friendly declarations: static 64x64 graphs that ONNX Runtime runs with the same results."""
    import onnxruntime as ort

    cfg = load_config("tiny")
    torch.manual_seed(0)
    m = OuterModel(cfg.encoder, cfg.unet).eval()
    _wake_zero_layers(m.unet)
    x, t = torch.randn(2, 3, 64, 64), torch.tensor([0, 999])
    c = m.enc(x).detach()
    torch.onnx.export(m.unet, (x, t, c), tmp_path / "u.onnx", input_names=["x", "t", "c"], output_names=["eps"],
                      dynamo=False, opset_version=17)
    torch.onnx.export(m.enc, (x,), tmp_path / "e.onnx", input_names=["x"], output_names=["c"], dynamo=False,
                      opset_version=17)
    u = ort.InferenceSession(str(tmp_path / "u.onnx"), providers=["CPUExecutionProvider"])
    e = ort.InferenceSession(str(tmp_path / "e.onnx"), providers=["CPUExecutionProvider"])
    eps = u.run(None, {"x": x.numpy(), "t": t.numpy(), "c": c.numpy()})[0]
    with torch.no_grad():
        ref = m.unet(x, t, c).numpy()
    assert np.abs(ref).max() > 1e-3
    np.testing.assert_allclose(eps, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e.run(None, {"x": x.numpy()})[0], c.numpy(), rtol=1e-4, atol=1e-5)


def _v_inner_config(tmp_path):
    (tmp_path / "v.toml").write_text((CONFIG_DIR / "tiny.toml").read_text() + '\n[inner]\nparam = "v"\n')
    return load_config(tmp_path / "v.toml")


def test_v_parameterisation(tmp_path):
    """param = "v": the untrained net (v = 0) returns eps = sqrt(1 - abar_t) x_t, i.e. it predicts x0 = 0 at
    every t instead of eps = 0; [inner] changes only N_i; the graph still exports to ONNX."""
    import onnxruntime as ort

    from rdec.runtime.ddim import alphas_cumprod

    cfg = _v_inner_config(tmp_path)
    assert cfg.unet.param == "eps" and cfg.inner_unet.param == "v"
    assert cfg.inner_unet.ch == cfg.unet.ch and cfg.inner_unet.T == cfg.ddim.T
    net = CondUNet(cfg.inner_unet).eval()
    assert set(net.state_dict()) == set(CondUNet(cfg.unet).state_dict())  # same weights, schedule not saved
    x, t = torch.randn(3, 3, 64, 64), torch.tensor([0, 500, 999])
    c = torch.randn(3, cfg.unet.c_dim)
    ab = torch.from_numpy(alphas_cumprod()).float()[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, c), (1 - ab).sqrt() * x)
    _wake_zero_layers(net)
    with torch.no_grad():
        ref = net(x, t, c).numpy()
    torch.onnx.export(net, (x, t, c), tmp_path / "v.onnx", input_names=["x", "t", "c"], output_names=["eps"],
                      dynamo=False, opset_version=17)
    sess = ort.InferenceSession(str(tmp_path / "v.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x.numpy(), "t": t.numpy(), "c": c.numpy()})[0], ref,
                               rtol=1e-4, atol=1e-5)


def test_bad_param_and_inner_section(tmp_path):
    base = (CONFIG_DIR / "tiny.toml").read_text()
    for extra, msg in (('\n[inner]\nparam = "x0"\n', "param must be eps or v"),
                       ('\n[inner]\nwidth = 3\n', "unknown key"),
                       ('\ninner = 3\n', "[inner] must be a section")):
        (tmp_path / "b.toml").write_text(extra + base if extra.startswith("\ninner") else base + extra)
        with pytest.raises(InputError, match=re.escape(msg)):
            load_config(tmp_path / "b.toml")
