"""`rdec eval lossless`: decrypt(encrypt(x)) through the outer DDIM only (no compression), with PSNR/SSIM
for K = 0 and the chosen K, statistics of the noise x_T from inversion and of the keyed mixing z that
travels, keyless attacks, key sensitivity, timings, a Markdown report and PNGs.

Encryption = c = Enc(block), DDIM inversion to x_T, then z = keyed mixing of x_T (rdec.runtime.noise_mixing,
fresh nonce per image); decryption = unmixing, then DDIM sampling with c.
"""
from __future__ import annotations

import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rdec.runtime.errors import InputError
from rdec.runtime.fileio import atomic_write, make_folder
from rdec.runtime.keys import check_key, generate_key, new_nonce, one_bit_off
from rdec.runtime.noise_mixing import mix_noise, unmix_noise

from . import metrics as M
from .blocks import merge_blocks, split_blocks
from .data import list_images, load_rgb
from .gaussian_model import StationaryGaussian
from .modelfile import DEFAULT_MODEL_DIR, load_model_dir
from .outer_path import CHUNK, decrypt_blocks, encrypt_blocks, invert, sample
from .train import pick_device

GRID_IMAGES = 4
CONV_BLOCKS = 16
SMOOTH_BINS = 5


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _to_tensor(blocks8: np.ndarray, dev) -> torch.Tensor:
    return torch.from_numpy(blocks8.astype(np.float32) / 127.5 - 1.0).to(dev)


def _to_255(x: torch.Tensor) -> np.ndarray:
    return np.clip(x.double().cpu().numpy() * 127.5 + 127.5, 0, 255)


def _noise_stats(xt: np.ndarray) -> dict:
    """Statistics of an encrypted image x_T (HxWx3 float)."""
    return {
        "entropy_cdf": M.channel_entropy8(M.to_8bit_cdf(xt)),
        "entropy_linear": M.channel_entropy8(M.to_8bit_linear(xt)),
        "entropy_minmax": M.channel_entropy8(M.to_8bit_minmax(xt)),
        "mean": [float(xt[..., k].mean()) for k in range(3)],
        "std": [float(xt[..., k].std()) for k in range(3)],
        "mean_cdf8": [float(M.to_8bit_cdf(xt[..., k]).mean()) for k in range(3)],
        "corr": M.adjacent_correlation(xt),
    }


def _mean_stats(stats: list[dict]) -> dict:
    """The mean over images of `_noise_stats` dicts (numbers, per-channel lists and H/V/D dicts alike)."""
    out = {}
    for name, v in stats[0].items():
        if isinstance(v, dict):
            out[name] = {d: float(np.mean([s[name][d] for s in stats])) for d in v}
        elif isinstance(v, list):
            out[name] = [float(np.mean([s[name][c] for s in stats])) for c in range(len(v))]
        else:
            out[name] = float(np.mean([s[name] for s in stats]))
    return out


def _grid_png(rows: list[tuple]) -> bytes:
    """Per image: original, x_T from inversion, the keyless attack on it, z (what travels), the decryption
    with a key one bit off, and the decryption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lin = f"linear, [-{M.LINEAR_RANGE:g}, {M.LINEAR_RANGE:g}]"
    titles = ("original", f"x_T from DDIM inversion ({lin})", "keyless attack on x_T: Gaussian-model colouring",
              f"z = keyed mixing of x_T: what travels ({lin})", "decrypted with the key one bit off", "decrypted")
    fig, axes = plt.subplots(len(rows), len(titles), figsize=(4 * len(titles), 2.8 * len(rows)), dpi=100,
                             squeeze=False)
    for r, (name, *images) in enumerate(rows):
        for c, (im, title) in enumerate(zip(images, titles)):
            axes[r, c].imshow(im, interpolation="nearest")
            axes[r, c].set_title(f"{name}: {title}" if c == 0 else title, fontsize=9)
            axes[r, c].axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _smooth_png(smooth: np.ndarray, ks: np.ndarray, corr: np.ndarray, ks_ref: float) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    axes[0].scatter(smooth, ks, s=3, alpha=0.4)
    axes[0].axhline(ks_ref, color="k", lw=1, ls="--", label="ideal N(0,1) block")
    axes[0].set_ylabel("KS distance of block x_T to N(0,1)")
    axes[1].scatter(smooth, corr, s=3, alpha=0.4)
    axes[1].axhline(0, color="k", lw=1, ls="--")
    axes[1].set_ylabel("lag-1 correlation inside block x_T")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("block smoothness: mean |neighbour difference| (8-bit)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fmt_db(v: float) -> str:
    return "inf" if v == float("inf") else f"{v:.2f}"


def _inner_check(net, inner_net, cfg, xs, x_T, c, S: int, K: int, ref8: np.ndarray, key: bytes) -> dict:
    """The inner pass on a few blocks: z = their x_T mixed (as one image), y = N_i sampling from z (what the
    codec would compress), how image-like y is, and how exactly N_i's inversion (K = 0, the default K, 6)
    returns z and, unmixed and decrypted, the block."""
    nonce = new_nonce()
    zn, rms = mix_noise(x_T.double().cpu().numpy(), key, nonce)
    z = torch.from_numpy(zn).to(x_T)
    y = sample(inner_net, z, c, cfg.ddim, S)
    yv, xv = y.double().cpu().numpy(), xs.double().cpu().numpy()
    out = {"y_std": float(yv.std()), "y_min": float(yv.min()), "y_max": float(yv.max()),
           "y_in_range": float(np.mean(np.abs(yv) <= 1.0)),
           "corr_y_block": float(np.corrcoef(yv.ravel(), xv.ravel())[0, 1]), "inversion": []}
    for k in sorted({0, K, 6}):
        zh = invert(inner_net, y, c, cfg.ddim, S, k)
        xh = torch.from_numpy(unmix_noise(zh.double().cpu().numpy(), rms, key, nonce)).to(x_T)
        d = _to_255(decrypt_blocks(net, xh, c, cfg.ddim, S))
        out["inversion"].append({"K": k, "z_max_err": float((zh - z).abs().max()), "psnr": M.psnr(ref8, d)})
    return out


def fit_prior(folder) -> StationaryGaussian:
    """The attacker's Gaussian image model: second-order statistics of the 64x64 blocks of a folder."""
    g = StationaryGaussian()
    for f in list_images(folder):
        g.add(split_blocks(load_rgb(f))[0].astype(np.float64) / 127.5 - 1.0)
    return g.fit()


def run_eval_lossless(data, out, model=None, steps: int | None = None, refine: int | None = None,
                      limit: int | None = None, threads: int = 2, device: str = "cpu", progress: bool = True,
                      prior_data=None, key: bytes | None = None) -> dict:
    """Evaluate the lossless channel on every image of `data`; write report.md, grid.png, smoothness.png,
    results.json into `out`. The keyless attack's Gaussian model is fitted on `prior_data` (default: `data`).
    `key` mixes x_T (default: a fresh random key, never stored). Returns the paths and the summary numbers."""
    from tqdm import tqdm

    files = list_images(data)[:limit] if limit else list_images(data)
    model_dir = Path(model) if model else DEFAULT_MODEL_DIR
    cfg, net, trained_step, inner_net, inner_step = load_model_dir(model_dir)
    S = steps or cfg.ddim.steps
    K = cfg.ddim.refine if refine is None else refine
    if not 1 <= S <= cfg.ddim.T:
        raise InputError(f"--steps must be in 1..{cfg.ddim.T}")
    Ks = sorted({0, K})
    key = generate_key() if key is None else check_key(key)
    dev = pick_device(device)
    prior_data = data if prior_data is None else prior_data
    list_images(prior_data)  # a bad folder fails here, before anything is written
    out = make_folder(out)
    torch.set_num_threads(threads)
    net = net.to(dev)
    inner_net = inner_net.to(dev) if inner_net is not None else None
    prior = fit_prior(prior_data)  # after every check: a bad argument fails before this work
    inner = None

    per_image, grid_rows, conv = [], [], []
    all_smooth, all_ks, all_corr, all_std, all_zks = [], [], [], [], []
    ref_stats = None
    bar = tqdm(total=len(files) * len(Ks), desc="eval lossless", unit="pass", file=sys.stderr, disable=not progress)
    for idx, f in enumerate(files):
        orig = load_rgb(f)
        blocks8, layout = split_blocks(orig)
        x0 = _to_tensor(blocks8, dev)
        rec = {"image": f.name, "size": f"{orig.shape[1]}x{orig.shape[0]}", "blocks": int(blocks8.shape[0])}
        for k in Ks:
            nonce = new_nonce()
            t0 = time.perf_counter()
            x_T, c = encrypt_blocks(net, x0, cfg.ddim, S, k)
            xt_blocks = x_T.double().cpu().numpy()
            z, rms = mix_noise(xt_blocks, key, nonce)
            t1 = time.perf_counter()
            xt_back = unmix_noise(z, rms, key, nonce)
            x_back = torch.from_numpy(xt_back).to(x_T)
            xr = decrypt_blocks(net, x_back, c, cfg.ddim, S)
            t2 = time.perf_counter()
            dec = merge_blocks(_to_255(xr), layout)
            rec[f"K{k}"] = {"psnr": M.psnr(orig, dec), "ssim": M.ssim(orig, dec),
                            "exact8": float(np.mean(np.round(dec).astype(np.uint8) == orig)),
                            "max_err": float(np.abs(dec - orig).max()),
                            "enc_s": t1 - t0, "dec_s": t2 - t1}
            if k == K:
                xt = merge_blocks(xt_blocks, layout)
                zi = merge_blocks(z, layout)
                rec["noise"] = _noise_stats(xt)
                rec["mixed"] = _noise_stats(zi)
                rec["mixed"]["entropy_linear_unscaled"] = M.channel_entropy8(M.to_8bit_linear(zi * rms))
                rec["mixed"]["rms"] = rms
                rec["mix_unmix_max_err"] = float(np.abs(xt_back - xt_blocks).max())  # float64, before the cast
                white = prior.whiten(x0.double().cpu().numpy())
                r_white = [float(np.corrcoef(xt_blocks[b].ravel(), white[b].ravel())[0, 1])
                           for b in range(xt_blocks.shape[0])]
                attack = merge_blocks(np.clip(prior.color(xt_blocks) * 127.5 + 127.5, 0, 255), layout)
                rec["attack"] = {"corr_white_mean": float(np.mean(r_white)), "corr_white_min": float(np.min(r_white)),
                                 "psnr": M.psnr(orig, attack), "ssim": M.ssim(orig, attack)}
                z_white = [float(np.corrcoef(z[b].ravel(), white[b].ravel())[0, 1]) for b in range(z.shape[0])]
                z_attack = merge_blocks(np.clip(prior.color(z) * 127.5 + 127.5, 0, 255), layout)
                rec["mixed_attack"] = {"corr_white_mean": float(np.mean(z_white)),
                                       "corr_white_max_abs": float(np.max(np.abs(z_white))),
                                       "psnr": M.psnr(orig, z_attack), "ssim": M.ssim(orig, z_attack)}
                rec["orig_corr"] = M.adjacent_correlation(orig.astype(np.float64))
                for b in range(xt_blocks.shape[0]):
                    st = M.block_noise_stats(xt_blocks[b])
                    all_smooth.append(M.block_smoothness(blocks8[b]))
                    all_ks.append(st["ks"])
                    all_corr.append(st["corr"])
                    all_std.append(st["std"])
                    all_zks.append(M.ks_normal(z[b]))
                if ref_stats is None:  # ideal noise of the same size, same statistics
                    ideal = np.random.default_rng(0).standard_normal(xt.shape)
                    ref_stats = _noise_stats(ideal)
                    ref_stats["block_ks"] = float(np.mean([M.ks_normal(b) for b in
                                                            np.random.default_rng(1).standard_normal((64, 3, 64, 64))]))
                if idx < GRID_IMAGES:  # key sensitivity: unmix with the key one bit off, then decrypt
                    xw = unmix_noise(z, rms, one_bit_off(key), nonce)
                    dw = merge_blocks(_to_255(decrypt_blocks(net, torch.from_numpy(xw).to(x_T), c, cfg.ddim, S)),
                                      layout)
                    rec["wrong_key"] = {"psnr": M.psnr(orig, dw), "ssim": M.ssim(orig, dw),
                                        "corr_xT": float(np.corrcoef(xw.ravel(), xt_blocks.ravel())[0, 1])}
                    grid_rows.append((f.stem, orig[::2, ::2], M.to_8bit_linear(xt)[::2, ::2],
                                      np.round(attack).astype(np.uint8)[::2, ::2], M.to_8bit_linear(zi)[::2, ::2],
                                      np.round(dw).astype(np.uint8)[::2, ::2],
                                      np.round(dec).astype(np.uint8)[::2, ::2]))
            bar.update(1)
        if idx == 0:  # convergence of the refinement on a few blocks of the first image
            xs = x0[:CONV_BLOCKS]
            ref8 = blocks8[:CONV_BLOCKS].astype(np.float64)
            for k in range(0, max(6, K) + 1):
                x_T, c = encrypt_blocks(net, xs, cfg.ddim, S, k)
                d = _to_255(decrypt_blocks(net, x_T, c, cfg.ddim, S))
                conv.append({"K": k, "psnr": M.psnr(ref8, d), "max_err": float(np.abs(d - ref8).max())})
                if k == K:
                    xs_T, xs_c = x_T, c
            if inner_net is not None:
                inner = _inner_check(net, inner_net, cfg, xs, xs_T, xs_c, S, K, ref8, key)
        per_image.append(rec)
    bar.close()

    def mean(key, k):
        v = [r[f"K{k}"][key] for r in per_image]
        return float(np.mean(v))

    def median(key, k):
        return float(np.median([r[f"K{k}"][key] for r in per_image]))

    summary = {f"K{k}": {"psnr": mean("psnr", k), "ssim": mean("ssim", k), "exact8": mean("exact8", k),
                         "max_err": max(r[f"K{k}"]["max_err"] for r in per_image),
                         "enc_s_median": median("enc_s", k), "dec_s_median": median("dec_s", k)} for k in Ks}
    noise_mean, mixed_mean = _mean_stats([r["noise"] for r in per_image]), _mean_stats([r["mixed"] for r in per_image])
    orig_corr = {d: float(np.mean([r["orig_corr"][d] for r in per_image])) for d in "HVD"}
    attack = {name: float(np.mean([r["attack"][name] for r in per_image])) for name in per_image[0]["attack"]}
    attack["corr_white_min"] = float(min(r["attack"]["corr_white_min"] for r in per_image))
    mixed_attack = {name: float(np.mean([r["mixed_attack"][name] for r in per_image]))
                    for name in per_image[0]["mixed_attack"]}
    mixed_attack["corr_white_max_abs"] = float(max(r["mixed_attack"]["corr_white_max_abs"] for r in per_image))
    noise_mean["block_ks"], mixed_mean["block_ks"] = float(np.mean(all_ks)), float(np.mean(all_zks))
    mixed_mean["mix_unmix_max_err"] = float(max(r["mix_unmix_max_err"] for r in per_image))
    wrong = [r["wrong_key"] for r in per_image if "wrong_key" in r]
    wrong_key = {name: [float(min(w[name] for w in wrong)), float(max(w[name] for w in wrong))] for name in wrong[0]}
    wrong_key["images"] = len(wrong)

    smooth, ks, corr, std = map(np.asarray, (all_smooth, all_ks, all_corr, all_std))
    edges = np.quantile(smooth, np.linspace(0, 1, SMOOTH_BINS + 1))
    bins = []
    for i in range(SMOOTH_BINS):
        sel = (smooth >= edges[i]) & ((smooth <= edges[i + 1]) if i == SMOOTH_BINS - 1 else (smooth < edges[i + 1]))
        if sel.any():
            bins.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "n": int(sel.sum()),
                         "ks": float(ks[sel].mean()), "corr": float(corr[sel].mean()), "std": float(std[sel].mean())})
    spearman = float(np.corrcoef(np.argsort(np.argsort(smooth)), np.argsort(np.argsort(ks)))[0, 1]) if len(ks) > 2 else 0.0

    results = {"model": str(model_dir), "trained_step": trained_step, "config": cfg.name, "steps": S, "refine": K,
               "device": str(dev), "threads": threads, "cpu": _cpu_name(), "torch": torch.__version__,
               "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "data": str(data),
               "summary": summary, "noise": noise_mean, "noise_ideal": ref_stats, "orig_corr": orig_corr,
               "attack": attack, "prior_data": str(prior_data), "mixed": mixed_mean, "mixed_attack": mixed_attack,
               "wrong_key": wrong_key,
               "smoothness_bins": bins, "spearman_smooth_ks": spearman, "inner": inner, "inner_step": inner_step,
               "convergence": conv, "images": per_image}
    report = _report(results, Ks)
    atomic_write(out / "results.json", json.dumps(results, indent=1).encode())
    atomic_write(out / "report.md", report.encode())
    atomic_write(out / "grid.png", _grid_png(grid_rows))
    atomic_write(out / "smoothness.png", _smooth_png(smooth, ks, corr, ref_stats["block_ks"]))
    return {"report": str(out / "report.md"), "grid": str(out / "grid.png"), "results": results}


def _report(R: dict, Ks: list[int]) -> str:
    S, K = R["steps"], R["refine"]
    s = R["summary"]
    L = [f"# Lossless channel: decrypt(encrypt(x)) through the outer DDIM\n",
         f"Model `{R['model']}` (config `{R['config']}`, EMA weights after {R['trained_step']} training steps), "
         f"{S} DDIM steps (eta = 0, T = 1000, linear betas), data `{R['data']}` ({len(R['images'])} images). "
         f"Encryption = c = Enc(block) + DDIM inversion with K fixed-point refinement iterations per step to x_T, "
         f"then z = keyed mixing of x_T; decryption = unmixing, then DDIM sampling with c; no compression in "
         f"between. Measured {R['date_utc']} UTC on "
         f"{R['cpu']} ({R['device']}, {R['threads']} torch threads, torch {R['torch']}).\n",
         "Generated by `rdec eval lossless`; PSNR/SSIM on 8-bit RGB of the float reconstruction (clipped to "
         "0..255, not rounded); *exact* is the share of 8-bit values equal to the original after rounding.\n",
         "## Summary\n",
         "| K | PSNR (dB) | SSIM | exact 8-bit | max error (of 255) | encrypt s/image | decrypt s/image | total s/image |",
         "|---|---|---|---|---|---|---|---|"]
    for k in Ks:
        v = s[f"K{k}"]
        L.append(f"| {k} | {_fmt_db(v['psnr'])} | {v['ssim']:.5f} | {100 * v['exact8']:.2f} % | {v['max_err']:.3f} | "
                 f"{v['enc_s_median']:.2f} | {v['dec_s_median']:.2f} | {v['enc_s_median'] + v['dec_s_median']:.2f} |")
    L.append(f"\nSeconds are medians over images (each image's blocks in chunks of {CHUNK} per network pass). "
             "Paper: 41.2 dB lossless-channel decryption PSNR.\n")
    n, z, ideal = R["noise"], R["mixed"], R["noise_ideal"]

    def row(name, fmt, get):
        return f"| {name} | " + " | ".join(fmt(get(v)) for v in (n, z, ideal)) + " |"

    def triple(fmt):
        return lambda v: ", ".join(fmt.format(e) for e in v)

    rms = [r["mixed"]["rms"] for r in R["images"]]
    L += ["## Encrypted noise (K = %d): x_T from inversion, and z that travels\n" % K,
          "x_T is the DDIM-inverted noise; z is x_T after the keyed mixing (`rdec.runtime.noise_mixing`: three "
          "rounds of an orthonormal 64-point Walsh-Hadamard transform, a keyed permutation of all the image's "
          "values and keyed signs, then a scale to unit RMS; fresh nonce per image, a random key for this run). "
          "Statistics of z are taken on z laid out as an image in the same block order. "
          "8-bit entropy is the mean of the three per-channel entropies. Mappings: *Gaussian CDF* "
          "byte = floor(256 Phi(x)) (ideal noise: 8.0); *linear* [-3, 3] -> 0..255 clipped; *min-max* linear over "
          "the image. The ideal column is the same computation on exact N(0, 1) noise of the size of the first "
          "image. Paper: 7.43 bits (its x_T under a linear mapping).\n",
          "| statistic (mean over images) | x_T from inversion | z, keyed mixing (travels) | ideal N(0, 1) |",
          "|---|---|---|---|",
          row("entropy, Gaussian-CDF mapping (bits)", "{:.4f}".format, lambda v: v["entropy_cdf"]),
          row("entropy, linear [-3, 3] mapping (bits)", "{:.4f}".format, lambda v: v["entropy_linear"]),
          f"| entropy, linear mapping, z before its unit-RMS scale (bits) | | {z['entropy_linear_unscaled']:.4f} | |",
          row("entropy, min-max linear mapping (bits)", "{:.4f}".format, lambda v: v["entropy_minmax"]),
          row("channel means R, G, B", triple("{:+.4f}"), lambda v: v["mean"]),
          row("channel std R, G, B", triple("{:.4f}"), lambda v: v["std"]),
          row("channel means after CDF mapping (8-bit)", triple("{:.2f}"), lambda v: v["mean_cdf8"])]
    for d, name in (("H", "horizontal"), ("V", "vertical"), ("D", "diagonal")):
        L.append(row(f"adjacent-pixel correlation, {name} (original image: {R['orig_corr'][d]:.4f})", "{:+.4f}".format,
                     lambda v: v["corr"][d]))
    L += [row("KS distance of a block's values to N(0, 1), mean over blocks", "{:.4f}".format,
              lambda v: v["block_ks"]),
          f"\nRMS of x_T per image (the scale z carries, secret with it): {min(rms):.4f} .. {max(rms):.4f}. "
          f"Largest |unmix(mix(x_T)) - x_T| over all images (float64): {z['mix_unmix_max_err']:.1e}.\n"]
    L += ["\n## Distance of each block's x_T from N(0, I) against block smoothness\n",
          "Blocks binned by smoothness quintile (mean absolute neighbour difference of the original block, 8-bit). "
          f"KS = Kolmogorov-Smirnov distance of the block's 12288 values to N(0, 1) (ideal noise block: "
          f"{ideal['block_ks']:.4f}); corr = lag-1 spatial correlation inside the block (ideal 0). "
          f"Spearman rank correlation of smoothness vs KS over all blocks: {R['spearman_smooth_ks']:+.3f}. "
          "Scatter plots: `smoothness.png`.\n",
          "| smoothness bin | blocks | mean KS | mean corr | mean std |", "|---|---|---|---|---|"]
    for b in R["smoothness_bins"]:
        L.append(f"| {b['lo']:.2f} - {b['hi']:.2f} | {b['n']} | {b['ks']:.4f} | {b['corr']:+.4f} | {b['std']:.4f} |")
    a = R["attack"]
    za, w = R["mixed_attack"], R["wrong_key"]
    L += ["\n## Keyless attack: x_T is largely the whitened block; z is not\n",
          "For Gaussian images x0 ~ N(mu, S), exact DDIM inversion ends at x_T = S^(-1/2) (x0 - mu), the block "
          "whitened, and natural images are close to Gaussian in their second-order statistics. The attacker's "
          "model: a stationary Gaussian (colour PCA, power spectrum of each component over the block's "
          f"even-symmetric extension) fitted on the 64x64 blocks of `{R['prior_data']}` "
          "(`rdec.export.gaussian_model`). *corr* = Pearson correlation of each block's noise with the whitened "
          "original block; *attack* = the noise coloured with S^(1/2) (no key, no network, no c), scored against "
          "the original. Ideal noise independent of the image gives corr 0 and an attack SSIM near 0.\n",
          "| statistic | x_T from inversion | z, keyed mixing (travels) |", "|---|---|---|",
          f"| corr(noise, whitened block), mean over blocks | {a['corr_white_mean']:+.3f} | {za['corr_white_mean']:+.4f} |",
          f"| corr(noise, whitened block), lowest block / largest magnitude | {a['corr_white_min']:+.3f} | "
          f"{za['corr_white_max_abs']:.4f} |",
          f"| attack PSNR (dB), mean over images | {a['psnr']:.2f} | {za['psnr']:.2f} |",
          f"| attack SSIM, mean over images | {a['ssim']:.4f} | {za['ssim']:.4f} |",
          f"\n## Key sensitivity\n",
          f"z unmixed with the key one bit off (same nonce), then decrypted with the true c, on the first "
          f"{R['wrong_key']['images']} images (range over them): the wrong key gives other noise, and the decryption shows "
          "nothing of the image.\n",
          "| statistic | min | max |", "|---|---|---|",
          f"| PSNR of the decryption (dB) | {w['psnr'][0]:.2f} | {w['psnr'][1]:.2f} |",
          f"| SSIM of the decryption | {w['ssim'][0]:.4f} | {w['ssim'][1]:.4f} |",
          f"| corr(wrongly unmixed noise, x_T) | {w['corr_xT'][0]:+.4f} | {w['corr_xT'][1]:+.4f} |"]
    L += ["\n## Refinement convergence\n",
          f"First image, first {CONV_BLOCKS} blocks, {S} steps: reconstruction error against K.\n",
          "| K | PSNR (dB) | max error (of 255) |", "|---|---|---|"]
    for c in R["convergence"]:
        L.append(f"| {c['K']} | {_fmt_db(c['psnr'])} | {c['max_err']:.2e} |")
    if R["inner"] is not None:
        i = R["inner"]
        L += ["\n## Inner pass (N_i): z -> y -> z^ on the same blocks\n",
              f"Inner model after {R['inner_step']} training steps. y = DDIM sampling of N_i from z, the keyed "
              f"mixing of these blocks' x_T (K = {K}), with the same c: the representation the codec compresses. "
              "Ideal: image-like y (values in [-1, 1]) and an exact inversion. The decrypted PSNR goes through both "
              "inversions, the unmixing and the outer sampling, with no compression.\n",
              f"y: std {i['y_std']:.3f}, range {i['y_min']:+.2f} .. {i['y_max']:+.2f}, {100 * i['y_in_range']:.1f} % "
              f"of values in [-1, 1], correlation with the original block {i['corr_y_block']:+.3f}.\n",
              "| K (inner inversion) | max abs z^ - z | decrypted PSNR (dB) |", "|---|---|---|"]
        for v in i["inversion"]:
            L.append(f"| {v['K']} | {v['z_max_err']:.2e} | {_fmt_db(v['psnr'])} |")
    L += ["\n## Per image\n",
          "| image | size | blocks | " + " | ".join(f"PSNR K={k} | SSIM K={k}" for k in Ks)
          + " | entropy CDF x_T / z | entropy linear x_T / z | corr H/V/D of x_T | corr with whitened | "
            "attack on x_T PSNR / SSIM | attack on z SSIM |",
          "|---|---|---|" + "---|---|" * len(Ks) + "---|---|---|---|---|---|"]
    for r in R["images"]:
        cells = " | ".join(f"{_fmt_db(r[f'K{k}']['psnr'])} | {r[f'K{k}']['ssim']:.5f}" for k in Ks)
        cr = r["noise"]["corr"]
        nz, mz = r["noise"], r["mixed"]
        L.append(f"| {r['image']} | {r['size']} | {r['blocks']} | {cells} | {nz['entropy_cdf']:.4f} / "
                 f"{mz['entropy_cdf']:.4f} | {nz['entropy_linear']:.4f} / {mz['entropy_linear']:.4f} | "
                 f"{cr['H']:+.3f} / {cr['V']:+.3f} / {cr['D']:+.3f} | {r['attack']['corr_white_mean']:+.3f} | "
                 f"{r['attack']['psnr']:.2f} / {r['attack']['ssim']:.4f} | {r['mixed_attack']['ssim']:.4f} |")
    L += ["\n## Figures\n", "![original / x_T / keyless attack on x_T / z / wrong-key decryption / decrypted](grid.png)\n",
          "![x_T vs smoothness](smoothness.png)\n"]
    return "\n".join(L) + "\n"
