"""L_simple of outer models on the same 256 random 64x64 crops of Kodak and of the training photos (fixed
crops, timesteps and noise), to tell a better denoiser from one fitted to the training photos alone.
Run from the repository root: python docs/lossless/gpu/denoise_loss.py MODEL_DIR_OR_OUTER_PT..."""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from rdec.export.data import CropSampler
from rdec.export.ddim import Schedule
from rdec.export.modelfile import load_outer

SETS = (("Kodak", "../shared/data/kodak"), ("training photos", "../shared/data/train"))
N, CHUNK = 256, 64


def main(paths: list[str]) -> None:
    torch.set_num_threads(2)
    sched = Schedule()
    crops = {k: torch.from_numpy(CropSampler(p, seed=11, check_name=False).batch(0, N)) for k, p in SETS}
    g = torch.Generator().manual_seed(3)
    t_uniform = torch.randint(0, 1000, (N,), generator=g)
    noise = torch.randn(N, 3, 64, 64, generator=g)
    print("| model (steps) | " + " | ".join(f"{k}: L_simple, t uniform / t = 30" for k, _ in SETS) + " |")
    print("|---|" + "---|" * len(SETS))
    for path in paths:
        p = Path(path)
        _, model, step = load_outer(p / "outer.pt" if p.is_dir() else p)
        model.eval()
        cells = []
        with torch.no_grad():
            for name, x0 in crops.items():
                losses = []
                for t in (t_uniform, torch.full((N,), 30)):
                    losses.append(sum(F.mse_loss(model(x0[i:i + CHUNK], sched.q_sample(
                        x0[i:i + CHUNK], t[i:i + CHUNK], noise[i:i + CHUNK]), t[i:i + CHUNK]), noise[i:i + CHUNK]).item()
                        for i in range(0, N, CHUNK)) / (N // CHUNK))
                cells.append(f"{losses[0]:.4f} / {losses[1]:.4f}")
        print(f"| {path} ({step}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: python {sys.argv[0]} MODEL_DIR_OR_OUTER_PT...")
    main(sys.argv[1:])
