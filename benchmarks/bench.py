"""Throughput of training, attacking and evaluating flows: train step, PGD step, forward, and batched ε sweeps.

    python benchmarks/bench.py                      # the reference architectures, batches 16/32/64, and the presets
    python benchmarks/bench.py --quick              # batch 16 only, fewer repeats
    python benchmarks/bench.py --only glow-h128     # one configuration

Every time is the median over `--repeats` calls after a warm-up, in one process, on random 8-bit images
of the CIFAR-10 shape (3×32×32, float32). Definitions, matching the reference figures of benchmarks/README.md:
- train step: bits/dim with dequantization noise, backward, Adam step (model in training mode);
- PGD step: the slope of `flownb.attacks.pgd`'s wall time between 1 and 1 + k steps (gradients w.r.t. the
  input only; the library never computes parameter gradients in an attack);
- forward: `bits_per_dim` without gradients (`torch.inference_mode`);
- sweep: `attack_sweep` over ε ∈ {0, 1, 2, 4, 8} with 32 steps (all ε in one batch) against one `pgd` call
  per ε, in image-steps per second.
Prints a table and writes JSON (machine, threads, versions, every number) beside this script.
"""
import argparse, json, os, platform, statistics, time
from pathlib import Path

import torch

from flownb.attacks import attack_sweep, pgd
from flownb.models import Glow, RealNVP, bits_per_dim, build_model, count_parameters

REFERENCE_MS = {  # public PyTorch implementations on this 2-core CPU, batch 16, 2 threads (benchmarks/README.md)
    "glow-h128": dict(train=171, pgd=97, forward=44),
    "glow-h512": dict(train=749, pgd=478, forward=226),
    "realnvp-c64": dict(train=3474, pgd=2484, forward=1088),
}
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

def median_ms(fn, repeats:int)->float:
    "Median wall time of fn() in milliseconds, after one warm-up call."
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)

def images(batch:int, seed:int=0)->torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, 32, 32), generator=g).float() / 255

def measure(name:str, build, batch:int, repeats:int, pgd_steps:int, sweep:bool)->dict:
    "Train step, PGD step and forward of one configuration at one batch size (and the sweep, if asked)."
    torch.manual_seed(0)
    model = build()
    x = images(batch)
    with torch.no_grad(): model.log_prob(x)            # data-dependent ActNorm initialisation
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)

    def train_step():
        model.train(); opt.zero_grad(set_to_none=True)
        bits_per_dim(model, x, generator=g).mean().backward(); opt.step()

    out = dict(config=name, batch=batch, parameters=count_parameters(model), train_ms=median_ms(train_step, repeats))
    model.eval()
    short = median_ms(lambda: pgd(model, x, 8, steps=1), repeats)
    long = median_ms(lambda: pgd(model, x, 8, steps=1 + pgd_steps), repeats)
    out["pgd_step_ms"] = (long - short) / pgd_steps

    def forward():
        with torch.inference_mode(): bits_per_dim(model, x, generator=g)
    out["forward_ms"] = median_ms(forward, repeats)
    if sweep:
        eps = [0, 1, 2, 4, 8]
        steps = 32
        t_batched = median_ms(lambda: attack_sweep(model, x, eps, steps, progress=False), max(1, repeats // 3))
        t_seq = median_ms(lambda: [pgd(model, x, e, steps) for e in eps], max(1, repeats // 3))
        n = len(eps) * batch * steps
        out.update(sweep_batched_image_steps_per_s=n / (t_batched / 1e3), sweep_sequential_image_steps_per_s=n / (t_seq / 1e3))
        out["sweep_speedup"] = out["sweep_batched_image_steps_per_s"] / out["sweep_sequential_image_steps_per_s"]
    ref = REFERENCE_MS.get(name)
    if ref and batch == 16:
        out.update(train_ratio=out["train_ms"] / ref["train"], pgd_ratio=out["pgd_step_ms"] / ref["pgd"],
                   forward_ratio=out["forward_ms"] / ref["forward"])
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
