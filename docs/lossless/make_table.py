"""The comparison tables of docs/lossless/param/README.md and docs/lossless/gpu/README.md, from the
results.json of each `rdec eval lossless` run on the first 4 Kodak images (the shipped model's full-Kodak
run is cut to the same 4). Run from the repository root: python docs/lossless/make_table.py {param,gpu}"""
import json
import statistics as st
import sys
from pathlib import Path

HERE = Path(__file__).parent
IMAGES = ["kodim01.png", "kodim02.png", "kodim03.png", "kodim04.png"]
SHIPPED = HERE / "results.json"
# (first column, steps, batch, results.json) per row
TABLES = {
    "param": ("N_o predicts", [("eps (shipped default)", 12000, 32, SHIPPED)] + [
        (p, s, 32, HERE / "param" / f"{p}_{s}" / "results.json") for s in (3000, 6000) for p in ("eps", "v")]),
    "gpu": ("trained on", [("CPU", s, 32, HERE / "param" / f"eps_{s}" / "results.json") for s in (3000, 6000)] + [
        ("CPU (shipped default)", 12000, 32, SHIPPED)] + [
        ("H100", s, 128, HERE / "gpu" / f"b128_{s}" / "results.json") for s in (10050, 15300, 20700)]),
}


def main(which: str) -> None:
    head, rows = TABLES[which]
    print(f"| {head} | steps x batch | x_T entropy CDF / linear (bits) | x_T channel std R, G, B | corr(x_T, "
          "whitened block) | keyless attack SSIM | decryption PSNR K=3 / K=0 (dB) |")
    print("|---|---|---|---|---|---|---|")
    for name, steps, batch, path in rows:
        if not path.is_file():
            continue
        ims = [i for i in json.loads(path.read_text())["images"] if i["image"] in IMAGES]
        assert [i["image"] for i in ims] == IMAGES, path

        def mean(f):
            return st.mean(f(i) for i in ims)

        std = ", ".join(f"{mean(lambda i: i['noise']['std'][k]):.3f}" for k in range(3))
        print(f"| {name} | {steps} x {batch} | {mean(lambda i: i['noise']['entropy_cdf']):.4f} / "
              f"{mean(lambda i: i['noise']['entropy_linear']):.4f} | {std} | "
              f"{mean(lambda i: i['attack']['corr_white_mean']):+.3f} | {mean(lambda i: i['attack']['ssim']):.3f} | "
              f"{mean(lambda i: i['K3']['psnr']):.2f} / {mean(lambda i: i['K0']['psnr']):.2f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TABLES:
        sys.exit(f"usage: python {sys.argv[0]} {{{','.join(TABLES)}}}")
    main(sys.argv[1])
