"""Cost of one PGD step against its floor, one forward+backward of the model with respect to the input.

    python benchmarks/pgd_step.py [--model glow] [--dataset cifar10] [--preset cpu] [--batch 16] [--repeats 7]

Prints, and writes as JSON next to this script, the median time of: forward+backward w.r.t. the
input only (parameters frozen), one PGD step (from the slope of pgd's wall time between `steps=1`
and `steps=1+k`), and their ratio, measured in one process so that the ratio is meaningful on a
noisy machine.
"""
import argparse, json, platform
from pathlib import Path

import torch

from flownb.attacks.pgd import frozen, pgd
from flownb.flows.likelihood import bits_per_dim
from flownb.flows.architectures import build_model
from flownb.data.datasets import DATASETS
from flownb.flows.models import count_parameters
from timing import median_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="glow", choices=["glow", "realnvp"])
    ap.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS))
    ap.add_argument("--preset", default="cpu", choices=["smoke", "cpu", "gpu", "paper"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="extra PGD steps whose cost is measured")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, args.dataset, args.preset)
    channels, size = DATASETS[args.dataset].channels, DATASETS[args.dataset].default_size
    x = torch.randint(0, 256, (args.batch, channels, size, size)).float()/255
    with torch.no_grad(): model(x)                     # data-dependent initialisation
    model.eval()

    def forward_backward_input():
        with frozen(model):
            xi = x.clone().requires_grad_(True)
            torch.autograd.grad(bits_per_dim(model, xi).sum(), xi)

    floor = median_ms(forward_backward_input, args.repeats) / 1e3
    short = median_ms(lambda: pgd(model, x, 8, steps=1), args.repeats) / 1e3
    long = median_ms(lambda: pgd(model, x, 8, steps=1 + args.steps), args.repeats) / 1e3
    step = (long - short)/args.steps
    result = dict(model=args.model, dataset=args.dataset, preset=args.preset, batch=args.batch,
                  parameters=count_parameters(model), threads=torch.get_num_threads(),
                  forward_backward_input_ms=1e3*floor, pgd_step_ms=1e3*step, ratio=step/floor,
                  torch=torch.__version__, python=platform.python_version(), machine=platform.machine())
    for k, v in result.items(): print(f"{k:>26}: {v:.3f}" if isinstance(v, float) else f"{k:>26}: {v}")
    out = Path(__file__).with_name(f"pgd_step_{args.model}_{args.dataset}_{args.preset}_b{args.batch}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
