"""Is the semantic code c what shrinks x_T? Inverts 24 blocks (every 4th) of kodim01 and kodim03 with each
block's own c, with the mean c of those blocks, and with another block's c, and prints the std of x_T
(default DDIM steps and K of each model). Run from the repository root:
python docs/lossless/gpu/c_swap.py MODEL_DIR_OR_OUTER_PT..."""
import sys
from pathlib import Path

import torch

from rdec.export.blocks import split_blocks
from rdec.export.data import load_rgb
from rdec.export.modelfile import load_outer
from rdec.export.outer_path import invert

IMAGES = ("kodim01", "kodim03")


def main(paths: list[str]) -> None:
    torch.set_num_threads(2)
    print("| image | model (steps) | own c | mean c | another block's c |")
    print("|---|---|---|---|---|")
    for img in IMAGES:
        blocks, _ = split_blocks(load_rgb(f"../shared/data/kodak/{img}.png"))
        x0 = torch.from_numpy(blocks[::4][:24]).float() / 127.5 - 1
        for path in paths:
            p = Path(path)
            cfg, model, step = load_outer(p / "outer.pt" if p.is_dir() else p)
            model.eval()
            with torch.no_grad():
                c = model.enc(x0)
                cells = [invert(model.unet, x0, cc, cfg.ddim, cfg.ddim.steps, cfg.ddim.refine).std().item()
                         for cc in (c, c.mean(0, keepdim=True).expand_as(c).contiguous(), c.roll(1, 0))]
            print(f"| {img} | {path} ({step}) | " + " | ".join(f"{v:.3f}" for v in cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: python {sys.argv[0]} MODEL_DIR_OR_OUTER_PT...")
    main(sys.argv[1:])
