"""The comparison table of docs/lossless/param/README.md, from the results.json of each `rdec eval lossless`
run (first 4 Kodak images; the shipped model's full-Kodak run is cut to the same 4). Run from the repository
root: python docs/lossless/param/make_table.py"""
import json
import statistics as st
from pathlib import Path

HERE = Path(__file__).parent
IMAGES = ["kodim01.png", "kodim02.png", "kodim03.png", "kodim04.png"]
ROWS = [("eps (shipped default)", 12000, HERE.parent / "results.json")] + [
    (p, s, HERE / f"{p}_{s}" / "results.json") for s in (3000, 6000) for p in ("eps", "v")]

print("| N_o predicts | steps | x_T entropy CDF / linear (bits) | x_T channel std R, G, B | corr(x_T, whitened "
      "block) | keyless attack SSIM | decryption PSNR K=3 / K=0 (dB) |")
print("|---|---|---|---|---|---|---|")
for name, steps, path in ROWS:
    if not path.is_file():
        continue
    ims = [i for i in json.loads(path.read_text())["images"] if i["image"] in IMAGES]
    assert [i["image"] for i in ims] == IMAGES, path

    def mean(f):
        return st.mean(f(i) for i in ims)

    std = ", ".join(f"{mean(lambda i: i['noise']['std'][k]):.3f}" for k in range(3))
    print(f"| {name} | {steps} | {mean(lambda i: i['noise']['entropy_cdf']):.4f} / "
          f"{mean(lambda i: i['noise']['entropy_linear']):.4f} | {std} | "
          f"{mean(lambda i: i['attack']['corr_white_mean']):+.3f} | {mean(lambda i: i['attack']['ssim']):.3f} | "
          f"{mean(lambda i: i['K3']['psnr']):.2f} / {mean(lambda i: i['K0']['psnr']):.2f} |")
