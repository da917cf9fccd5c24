"""What each speed switch of `flownb.flows.speed` does to trained flows, and what it buys, on this machine.

    python benchmarks/speed_switches.py runs/<key> [runs/<key> ...]      # run folders of trained flows
    python benchmarks/speed_switches.py --cpu-preset                      # the cpu-preset GLOW (Table 1) and RealNVP (Table 3)

For each flow and switch: `flownb.attacks.evaluation.compare_to_float32` on 256 test images of its dataset (clean bits/dim,
log-density, bits/dim after an ℓ∞ PGD attack, ε = 8, 10 steps, quantized), and the time of a PGD step and a
training step at batch 32 with and without the switch (median of rounds, interleaved). TF32 and CUDA graphs
act on CUDA only and are measured by `benchmarks/gpu_check.py`. Writes speed_switches_<device>.json beside itself.
"""
import argparse, json, platform, sys, time
from pathlib import Path

import torch

from flownb.core.devices import resolve_device
from flownb.flows.likelihood import bits_per_dim_given_noise
from flownb.training.spec import RunSpec
from flownb.training.runs import experiment_data, load_run, run_root
from flownb.experiments.robustness import trio_budget
from flownb.experiments.budgets import REALNVP_BUDGETS
from flownb.flows.speed import SpeedOptions, sped_up
from flownb.attacks.evaluation import compare_to_float32
from flownb.training.checkpoints import checkpoint_step
from flownb.training.loop import adam
from timing import alternated_median_ms

SWITCHES = ["bf16", "channels_last", "compile"]


def cpu_preset_runs()->list:
    "Run folders of the cpu-preset clean GLOW of Table 1 and clean RealNVP of Table 3 (CelebA), as the notebooks key them."
    found = []
    for cfg_path in sorted(run_root().glob("*/config.json")):
        c = json.loads(cfg_path.read_text())
        if "train" not in c: continue   # a run of an older layout
        spec = RunSpec.from_record(c)
        if spec.train.mode == "clean" and spec.init_seed == 0 and spec.train.seed == 0 and (
                (spec.model.family, spec.data.dataset, spec.train.steps) in {("glow", "cifar10", trio_budget("cpu").clean_steps),
                                                                          ("realnvp", "celeba", REALNVP_BUDGETS["cpu"].steps)}) \
                and (cfg_path.parent/"checkpoint.pt").exists() and checkpoint_step(cfg_path.parent/"checkpoint.pt") == spec.train.steps:
            found.append(cfg_path.parent)
    return found


def step_ms(model, x, switch, rounds:int=5)->dict:
    "Median ms of a PGD step and a training step at x's batch, float32 against the switch, the two interleaved."
    import copy
    variants = {"float32": copy.deepcopy(model), switch: sped_up(model, SpeedOptions.parse(switch))}
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    def pgd_step(m):
        for p in m.parameters(): p.requires_grad_(False)
        xa = x.detach().requires_grad_(True)
        torch.autograd.grad(bits_per_dim_given_noise(m, xa, u).sum(), xa)
    def train_step(m, opt):
        for p in m.parameters(): p.requires_grad_(True)
        m.train(); opt.zero_grad(set_to_none=True); bits_per_dim_given_noise(m, x, u).mean().backward(); opt.step(); m.eval()
    opts = {k: adam(m.parameters(), 1e-5) for k, m in variants.items()}
    fns = {f"{k} {kind}": (lambda m=m: pgd_step(m)) if kind == "pgd" else (lambda m=m, k=k: train_step(m, opts[k]))
           for k, m in variants.items() for kind in ("pgd", "train")}
    medians = alternated_median_ms(fns, rounds, warmup_rounds=2)   # two warm-up rounds (compilation happens there)
    return {k: round(v, 2) for k, v in medians.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", help="run folders of trained flows")
    p.add_argument("--cpu-preset", action="store_true", help="find the cpu-preset GLOW and RealNVP runs in runs/")
    p.add_argument("--device", default="cpu")
    p.add_argument("--switches", default=",".join(SWITCHES))
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    runs = [Path(r) for r in args.runs] + (cpu_preset_runs() if args.cpu_preset else [])
    if not runs: sys.exit("no trained runs: pass run folders, or train the cpu-preset models (make paper NB=05_glow_cifar PRESET=cpu)")
    report = dict(device=str(device), torch=torch.__version__, threads=torch.get_num_threads(), python=platform.python_version(), rows=[])
    for run in runs:
        model, spec = load_run(run)
        model = model.to(device)
        data = experiment_data(spec.data.dataset, spec.data.image_size, 1000, 256)
        x = data["test"].to(device)
        for s in [s for s in args.switches.split(",") if s]:
            t0 = time.time()
            row = dict(run=run.name, model=spec.model.family, dataset=spec.data.dataset, arch=spec.model.architecture,
                       **compare_to_float32(model, x, SpeedOptions.parse(s), eps=8, attack_steps=10))
            row.update(step_ms(model, x[:32], s))
            row["seconds"] = round(time.time() - t0, 1)
            report["rows"].append(row)
            print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items() if k != "arch"}), flush=True)
    out = Path(args.out) if args.out else Path(__file__).parent/f"speed_switches_{device.type}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
