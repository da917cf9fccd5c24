"""Throughput of training, attacking and evaluating flows: train step, PGD step, forward, and batched ε sweeps.

    python benchmarks/bench.py                      # the reference architectures, batches 16/32/64, and the presets
    python benchmarks/bench.py --quick              # batch 16 only, fewer repeats
    python benchmarks/bench.py --only glow-h128     # one configuration

Every time is the median over `--repeats` rounds after a warm-up, in one process, on random 8-bit images
of the CIFAR-10 shape (3×32×32, float32); the variants compared are called in turn within each round, so the
machine's drift hits them alike. Definitions, matching the reference figures of benchmarks/README.md:
- train step: bits/dim with dequantization noise, gradients, Adam step (model in training mode), as
  `flownb.training.loop` does it: one forward and backward over the batch and the fused Adam (`flownb.training.loop.adam`);
- PGD step: the cost of one more step of `flownb.attacks.pgd.pgd` (1 against 1 + k steps, differenced within each
  round; gradients w.r.t. the input only; never parameter gradients);
- forward: `bits_per_dim` without gradients (`torch.inference_mode`);
- sweep: `attack_sweep` over ε ∈ {0, 1, 2, 4, 8} with 32 steps (all ε in one batch) against one `pgd` call
  per ε, in image-steps per second.
Each is also timed for two baselines: the library's train step with the for-each Adam, and, for the GLOW configurations, a plain PyTorch GLOW of the same architecture (benchmarks/plain_glow.py), whose time
relative to the reference figures shows how fast the machine is today.
Prints a table and writes JSON (machine, threads, versions, every number) beside this script.
"""
import argparse, json, os, platform, statistics
from pathlib import Path

import torch

from flownb.attacks.pgd import attack_sweep, pgd
from flownb.flows.models import Glow, RealNVP, count_parameters
from flownb.flows.likelihood import bits_per_dim, bits_per_dim_given_noise
from flownb.flows.architectures import build_model
from flownb.training.loop import adam
from plain_glow import PlainGlow, plain_bits_per_dim, plain_pgd_step
from timing import alternated_ms, alternated_median_ms, paired_slope_ms

REFERENCE_MS = {  # public PyTorch implementations on this 2-core CPU, batch 16, 2 threads (benchmarks/README.md)
    "glow-h128": dict(train=171, pgd=97, forward=44),
    "glow-h512": dict(train=749, pgd=478, forward=226),
    "realnvp-c64": dict(train=3474, pgd=2484, forward=1088),
}
PLAIN = {"glow-h128": dict(levels=3, depth=8, hidden=128), "glow-h512": dict(levels=3, depth=8, hidden=512)}  # same-run baselines
TARGETS = dict(train={"glow-h128": 0.75, "glow-h512": 0.75, "realnvp-c64": 0.8}, pgd=0.7, sweep=1.3)

def configurations()->dict:
    "name -> function building a fresh model (seeded)."
    return {
        "glow-h128": lambda: Glow(3, 32, levels=3, depth=8, hidden=128),
        "glow-h512": lambda: Glow(3, 32, levels=3, depth=8, hidden=512),
        "realnvp-c64": lambda: RealNVP(3, 32, scales=2, hidden=64, blocks=8),
        "glow-cpu-preset": lambda: build_model("glow", "cifar10", "cpu"),
        "realnvp-cpu-preset": lambda: build_model("realnvp", "cifar10", "cpu"),
        "glow-paper-preset": lambda: build_model("glow", "cifar10", "paper"),
        "realnvp-paper-preset": lambda: build_model("realnvp", "cifar10", "paper"),
    }

def images(batch:int, seed:int=0)->torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, 32, 32), generator=g).float() / 255

def plain_steps(arch:dict, x:torch.Tensor)->dict:
    "Train step, PGD step and forward of the plain GLOW (benchmarks/plain_glow.py) of the same architecture, as functions."
    torch.manual_seed(0)
    model = PlainGlow(3, **arch)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad(): model.log_prob(x)            # ActNorm initialisation
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    def train():
        opt.zero_grad(set_to_none=True); plain_bits_per_dim(model, x, g).mean().backward(); opt.step()
    def attack():
        model.requires_grad_(False)
        plain_pgd_step(model, x, x, 8 / 255, 2 / 255, g)
        model.requires_grad_(True)
    def forward():
        with torch.inference_mode(): plain_bits_per_dim(model, x, g)
    return dict(train=train, pgd=attack, forward=forward)

def measure(name:str, build, batch:int, repeats:int, pgd_steps:int, sweep:bool)->dict:
    "Train step, PGD step and forward of one configuration at one batch size (and the sweep, if asked)."
    torch.manual_seed(0)
    model = build()
    x = images(batch)
    with torch.no_grad(): model.log_prob(x)            # data-dependent ActNorm initialisation
    params = list(model.parameters())
    opt, opt_loop = adam(params, lr=1e-4), torch.optim.Adam(params, lr=1e-4)
    g = torch.Generator().manual_seed(1)
    def train_step(optimizer):     # what flownb.training.loop does (with `opt`: its fused Adam)
        model.train(); optimizer.zero_grad(set_to_none=True)
        bits_per_dim_given_noise(model, x, torch.rand(x.shape, generator=g)).mean().backward(); optimizer.step()

    plain = plain_steps(PLAIN[name], x) if name in PLAIN else {}
    t = alternated_median_ms({"fused": lambda: train_step(opt), "foreach": lambda: train_step(opt_loop),
                              **({"plain": plain["train"]} if plain else {})}, repeats)
    out = dict(config=name, batch=batch, parameters=count_parameters(model), threads=torch.get_num_threads(),
               train_ms=t["fused"], train_foreach_adam_ms=t["foreach"], **({"train_plain_ms": t["plain"]} if plain else {}))
    model.eval()
    short, long = (lambda: pgd(model, x, 8, steps=1)), (lambda: pgd(model, x, 8, steps=1 + pgd_steps))
    t = alternated_ms({"short": short, "long": long, **({"plain": plain["pgd"]} if plain else {})}, repeats)
    out["pgd_step_ms"] = paired_slope_ms(t, "short", "long", pgd_steps)
    if plain: out["pgd_step_plain_ms"] = statistics.median(t["plain"])

    def forward():
        with torch.inference_mode(): bits_per_dim(model, x, generator=g)
    t = alternated_median_ms({"lib": forward, **({"plain": plain["forward"]} if plain else {})}, repeats)
    out["forward_ms"] = t["lib"]
    if plain:
        out["forward_plain_ms"] = t["plain"]
        out.update(train_vs_plain=out["train_ms"] / out["train_plain_ms"], pgd_vs_plain=out["pgd_step_ms"] / out["pgd_step_plain_ms"],
                   forward_vs_plain=out["forward_ms"] / out["forward_plain_ms"])
    out["fused_adam_speedup"] = out["train_foreach_adam_ms"] / out["train_ms"]
    if sweep:
        eps = [0, 1, 2, 4, 8]
        steps = 32
        t = alternated_median_ms({"batched": lambda: attack_sweep(model, x, eps, steps, progress=False),
                                  "sequential": lambda: [pgd(model, x, e, steps) for e in eps]}, max(1, repeats // 3))
        n = len(eps) * batch * steps
        out.update(sweep_batched_image_steps_per_s=n / (t["batched"] / 1e3), sweep_sequential_image_steps_per_s=n / (t["sequential"] / 1e3))
        out["sweep_speedup"] = out["sweep_batched_image_steps_per_s"] / out["sweep_sequential_image_steps_per_s"]
    ref = REFERENCE_MS.get(name)
    if ref and batch == 16:
        out.update(train_ratio=out["train_ms"] / ref["train"], pgd_ratio=out["pgd_step_ms"] / ref["pgd"],
                   forward_ratio=out["forward_ms"] / ref["forward"])
        if plain:   # how this machine, today, compares with the one the reference figures come from
            out.update(plain_train_vs_reference=out["train_plain_ms"] / ref["train"],
                       plain_pgd_vs_reference=out["pgd_step_plain_ms"] / ref["pgd"],
                       plain_forward_vs_reference=out["forward_plain_ms"] / ref["forward"])
    return out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="configurations to run (default: all)")
    ap.add_argument("--batches", nargs="*", type=int, default=[16, 32, 64])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--pgd-steps", type=int, default=5, help="extra PGD steps whose cost is measured")
    ap.add_argument("--quick", action="store_true", help="batch 16, 3 repeats, no paper presets")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--sweep", nargs="*", default=["glow-h128"], help="configurations whose ε sweep is timed (batch 16)")
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/bench_<host>.json)")
    args = ap.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    configs = configurations()
    names = args.only or [n for n in configs if not (args.quick and "paper" in n)]
    unknown = set(names) - set(configs)
    if unknown: ap.error(f"unknown configurations {sorted(unknown)}: choose from {sorted(configs)}")
    batches, repeats = ([16], 3) if args.quick else (args.batches, args.repeats)
    rows = []
    for name in names:
        for b in (batches if ("paper" not in name) else [16]):
            r = measure(name, configs[name], b, repeats if "paper" not in name else 3, args.pgd_steps,
                        sweep=(b == 16 and name in args.sweep))
            rows.append(r)
            print(" | ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
    result = dict(machine=dict(platform=platform.platform(), processor=platform.processor(), cpus=os.cpu_count(),
                               threads=torch.get_num_threads(), cuda=torch.cuda.is_available()),
                  versions=dict(torch=torch.__version__, python=platform.python_version()),
                  reference_ms=REFERENCE_MS, targets=TARGETS, rows=rows)
    out = Path(args.out) if args.out else Path(__file__).with_name(f"bench_{platform.node() or 'host'}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")

if __name__ == "__main__":
    main()
