"""Check a GPU machine before the paper's budgets are spent on it, and project the hours they take.

    make gpu-check                                   # on a CUDA machine: at most ~8 minutes on one GPU
    python benchmarks/gpu_check.py --dry-run         # the same code on the CPU with the smoke architectures (< 1 min)
    python benchmarks/gpu_check.py --trained runs/<key>   # also measure the speed switches on a trained flow

0. End to end: the smoke-sized Table 1 experiment (`flownb.experiments.robustness.trio_experiment` on scikit-learn's digits,
   training included) on the device, with every module of the process watched
   (`flownb.core.devices.every_module_stays_on`); then the same flows asked for on the CPU must be reused from their
   checkpoints (no retraining) with the same weights.
1. Placement: a training step (hybrid: clean + PGD examples), a PGD attack and the evaluation tables of the
   experiments run on each paper-preset model inside `flownb.core.devices.tensors_stay_on`: the check fails if any
   tensor reaches the model from the CPU.
2. Timings, at the paper's batch sizes, of a train step (bits/dim with dequantization noise, backward, Adam),
   a PGD step (gradient of bits/dim w.r.t. the input, model frozen) and a forward (no gradients), for
   GLOW on 32×32 (Table 1), GLOW on 64×64 (Table 2) and RealNVP on 64×64 (Table 3), in float32 (TF32 off) and
   with each speed switch of `flownb.flows.speed`; peak GPU memory of each.
3. With `--trained`, what each switch does to a trained flow's bits/dim, log-density and attacked bits/dim
   (`flownb.attacks.evaluation.compare_to_float32`).
4. The projected hours of Tables 1-3 at the `paper` and `gpu` presets on 1 and 8 GPUs (`flownb.experiments.hours`).

Writes JSON (`--out`, default benchmarks/gpu_check_<device>.json; the dry run writes to a temporary file) and
prints a table. Exits non-zero when a placement check fails.
"""
import argparse, copy, json, os, platform, sys, tempfile, time, traceback
from pathlib import Path

import torch

from flownb.core.devices import resolve_device, tensors_stay_on, every_module_stays_on
from flownb.flows.architectures import build_model, model_config
from flownb.flows.likelihood import bits_per_dim_given_noise
from flownb.flows.models import count_parameters
from flownb.attacks.pgd import pgd
from flownb.training.loop import train, adam
from flownb.attacks.evaluation import robustness_table, noise_table, ood_table
from flownb.experiments.robustness import trio_experiment, trio_budget, trio_specs
from flownb.training.runs import trained_flow, experiment_data
from flownb.core.presets import PRESETS
from flownb.experiments.budgets import TRIO_BUDGETS, REALNVP_BUDGETS
from flownb.flows.speed import SpeedOptions, sped_up
from flownb.attacks.evaluation import compare_to_float32
from flownb.core.devices import set_tf32
from flownb.experiments.hours import projected_hours

# model key -> (model, dataset whose paper architecture it is, image size, batch size at the paper preset)
MODELS = {
    "glow32": ("glow", "cifar10", 32, TRIO_BUDGETS["paper"].batch_size),
    "glow64": ("glow", "celeba", 64, TRIO_BUDGETS["paper"].batch_size),
    "realnvp64": ("realnvp", "celeba", 64, REALNVP_BUDGETS["paper"].batch_size),
}
SWITCHES = ["tf32", "bf16", "channels_last", "cuda_graphs", "compile"]   # compile last: it takes the longest


def images(n:int, channels:int, size:int, device, seed:int=0)->torch.Tensor:
    "Random 8-bit images (values k/255)."
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, channels, size, size), generator=g).float() / 255).to(device)


def fresh_model(key:str, arch_preset:str, device, dry:bool)->torch.nn.Module:
    "The model of a key at a preset, ActNorm initialised on random images, on `device`."
    name, dataset, size, _ = MODELS[key]
    torch.manual_seed(0)
    arch = {**model_config(name, dataset, arch_preset), "image_size": 8 if dry else size}
    arch.pop("in_channels")
    m = build_model(name, dataset, arch_preset, **arch).to(device)
    with torch.no_grad(): m.log_prob(images(4, 3, arch["image_size"], device) * 255 / 256 + 1 / 512)
    return m


def end_to_end(device)->dict:
    "The smoke trio experiment on digits on `device`, every module watched; then its clean flow reused on the CPU."
    root = Path(tempfile.mkdtemp(prefix="gpu-check-runs-"))
    budget = trio_budget("smoke", n_test=4, clean_steps=8, robust_steps=2, ood_n=1, ood_steps=2, eval_attack_steps=2)
    t, seen = time.time(), []
    with every_module_stays_on(device, seen):
        res = trio_experiment("glow", "digits", 8, 8, budget, {}, "smoke", root=root, progress=False, device=device)
    seconds = time.time() - t
    clean = res["runs"]["clean"]
    data = experiment_data("digits", budget.image_size, budget.n_train, budget.n_test, budget.min_train)
    again = trained_flow(trio_specs("glow", data, budget, 8)["clean"], data, root=root, progress=False, device="cpu")
    same = all(torch.equal(a.cpu(), b) for a, b in zip(clean.model.state_dict().values(), again.model.state_dict().values()))
    devices = sorted({str(d) for _, d in seen})
    import matplotlib.pyplot as plt; plt.close("all")
    return dict(ok=devices == [str(device)] and again.reused and same and again.run_dir == clean.run_dir,
                devices=devices, inputs_checked=len(seen), seconds=round(seconds, 1), reused_on_cpu=again.reused,
                same_weights_on_cpu=same, table_bpd_clean_eps0=float(res["table"].iloc[0, 0]))


def check_placement(key:str, arch_preset:str, device, batch:int, dry:bool)->dict:
    "A hybrid training step, an attack sweep, the noise baseline and the OOD attack with every model input watched."
    name, dataset, size, _ = MODELS[key]
    size = 8 if dry else size
    m = fresh_model(key, arch_preset, device, dry)
    seen = []
    t = time.time()
    with tensors_stay_on(m, device, seen):
        train(m, images(2 * batch, 3, size, "cpu", 1), mode="hybrid", eps=8, attack_steps=1, steps=1, batch_size=batch,
              warmup_steps=1, eval_every=1, checkpoint_every=1, preset="smoke", progress=False, device=device)
        m.eval()
        x = images(batch, 3, size, "cpu", 2)
        robustness_table({"m": m}, x, [0, 8], 1, batch_size=batch, progress=False)
        noise_table({"m": m}, x, [0, 8])
        ood_table({"m": m}, 2, (3, size, size), [0, 8], steps=1)
    devices = sorted({str(d) for _, d in seen})
    return dict(ok=devices == [str(device)], devices=devices, inputs_checked=len(seen), seconds=round(time.time() - t, 1))


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def time_ms(fn, device, min_seconds:float, warmup:int=2)->float:
    "Median milliseconds of fn() over rounds of at least `min_seconds` in all (CUDA synchronised), after `warmup` calls."
    from torch.utils.benchmark import Timer
    for _ in range(warmup): fn()
    sync(device)
    m = Timer(stmt="fn(); sync(device)", globals=dict(fn=fn, sync=sync, device=device)).blocked_autorange(min_run_time=min_seconds)
    return m.median * 1000


def measure(key:str, arch_preset:str, device, batch:int, switches:list, dry:bool, min_seconds:float)->dict:
    "Train step, PGD step and forward of one model with one set of switches: ms per batch, ms per image, peak memory."
    name, dataset, size, _ = MODELS[key]
    size = 8 if dry else size
    options = SpeedOptions.parse(",".join(switches))
    m = sped_up(fresh_model(key, arch_preset, device, dry), options)
    x = images(batch, 3, size, device, 3)
    g = torch.Generator(device=device).manual_seed(0)
    u = lambda: torch.rand(x.shape, generator=g, device=device)
    opt = adam(m.parameters(), 1e-4)
    if device.type == "cuda": torch.cuda.reset_peak_memory_stats(device)
    out = {}
    if not (options.cuda_graphs or options.compile):   # CUDA graphs serve PGD only; compile is timed on PGD (compile time)
        def train_step():
            m.train(); opt.zero_grad(set_to_none=True)
            bits_per_dim_given_noise(m, x, u()).mean().backward()
            opt.step()
        out["train_ms"] = time_ms(train_step, device, min_seconds)
        m.eval()
        def forward():
            with torch.no_grad(): bits_per_dim_given_noise(m, x, u())
        out["forward_ms"] = time_ms(forward, device, min_seconds)
    m.eval()
    for p in m.parameters(): p.requires_grad_(False)
    def pgd_step():
        xa = x.detach().requires_grad_(True)
        torch.autograd.grad(bits_per_dim_given_noise(m, xa, u()).sum(), xa)
    out["pgd_ms"] = time_ms(pgd_step, device, min_seconds, warmup=4)
    if options.cuda_graphs:   # the library's attack through the graphs against the same attack run eagerly
        attack = lambda: pgd(m, x, 8, 3, generator=torch.Generator(device=device).manual_seed(1))
        graphed = attack(); m.graphed = None; eager = attack()
        out["pgd_graphed_vs_eager_max_abs_diff"] = float((graphed - eager).abs().max())
    if device.type == "cuda": out["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    for k in [k for k in out if k.endswith("_ms")]: out[k.replace("_ms", "_ms_per_image")] = out[k] / batch
    return out


def switch_quality(trained:Path, device, switches:list)->list:
    "What each switch does to a trained flow (its run folder: checkpoint.pt and config.json; test images in test_images.pt)."
    from flownb.training.runs import load_run
    model, config = load_run(trained)
    model = model.to(device)
    x = torch.load(trained/"test_images.pt").float() / 255
    rows = []
    if device.type == "cuda":   # the same flow, images, noise and attack generator (a CPU one) on the CPU and on the GPU
        u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
        cpu_model = copy.deepcopy(model).cpu()
        with torch.no_grad():
            b_cpu = bits_per_dim_given_noise(cpu_model, x, u).double()
            b_gpu = bits_per_dim_given_noise(model, x.to(device), u.to(device)).double().cpu()
        a_cpu = pgd(cpu_model, x, 8, 10, generator=torch.Generator().manual_seed(1), quantize=True)
        a_gpu = pgd(model, x.to(device), 8, 10, generator=torch.Generator().manual_seed(1), quantize=True).cpu()
        with torch.no_grad(): ab_cpu, ab_gpu = (bits_per_dim_given_noise(cpu_model, a, u).double() for a in (a_cpu, a_gpu))
        rows.append(dict(options="cuda vs cpu (float32)", model=config["model"], n=len(x),
                         clean_bpd_abs_diff=float((b_gpu - b_cpu).abs().max()), clean_bpd_ref=float(b_cpu.mean()),
                         attacked_pixels_differing=float((a_cpu != a_gpu).float().mean()),
                         attacked_bpd_cpu=float(ab_cpu.mean()), attacked_bpd_cuda_images=float(ab_gpu.mean())))
    for s in switches:
        if s == "cuda_graphs" and device.type != "cuda": continue
        try: rows.append(dict(compare_to_float32(model, x, SpeedOptions.parse(s), eps=8, attack_steps=10), model=config["model"]))
        except Exception as e: rows.append(dict(options=s, error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
    return rows


def write(report:dict, out:Path):
    "Write the report as JSON (atomically)."
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str) + "\n"); os.replace(tmp, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, smoke architectures, 8x8 images, short timings")
    p.add_argument("--out", default=None, help="JSON path (default: benchmarks/gpu_check_<device>.json; dry run: a temporary file)")
    p.add_argument("--trained", default=None, help="run folder of a trained flow (with test_images.pt) to measure the switches on")
    p.add_argument("--budget-minutes", type=float, default=8.0, help="stop measuring switches when this is spent")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model keys")
    args = p.parse_args(argv)
    t0 = time.time()
    dry = args.dry_run
    device = torch.device("cpu") if dry else resolve_device("cuda")
    arch_preset = "smoke" if dry else "paper"
    min_seconds = 0.02 if dry else 0.6
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    default_tf32 = dict(matmul=torch.backends.cuda.matmul.allow_tf32, cudnn_conv=torch.backends.cudnn.allow_tf32)
    set_tf32(False)
    report = dict(device=str(device), device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
                  dry_run=dry, arch_preset=arch_preset, torch=torch.__version__, python=platform.python_version(),
                  cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if device.type == "cuda" else None,
                  pytorch_default_tf32=default_tf32,
                  models={}, placement={}, timings={}, quality=[], errors=[])
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="gpu-check-"))/"gpu_check_dry_run.json" if dry else
                                           Path(__file__).parent/f"gpu_check_{torch.cuda.get_device_name(device).split()[-1].lower()}.json")
    failed = False
    try: report["end_to_end"] = end_to_end(device)
    except Exception as e:
        report["end_to_end"] = dict(ok=False, error=f"{type(e).__name__}: {e}")
        report["errors"].append(dict(model="end_to_end", switch="", trace=traceback.format_exc()[-2000:]))
    failed |= not report["end_to_end"]["ok"]
    print(f"end to end: {report['end_to_end']}", flush=True)
    if args.trained:
        report["quality"] = switch_quality(Path(args.trained), device, [s for s in SWITCHES if s != "compile"])   # compile: CPU figures
        for r in report["quality"]: print("  quality", r, flush=True)
        write(report, out)
    for key in keys:
        name, dataset, size, batch = MODELS[key]
        batch = 4 if dry else batch
        m = fresh_model(key, arch_preset, device, dry)
        report["models"][key] = dict(model=name, architecture=model_config(name, dataset, arch_preset), image_size=8 if dry else size,
                                     batch=batch, parameters=count_parameters(m))
        del m
        try: report["placement"][key] = check_placement(key, arch_preset, device, batch, dry)
        except Exception as e: report["placement"][key] = dict(ok=False, error=f"{type(e).__name__}: {e}")
        failed |= not report["placement"][key]["ok"]
        print(f"{key}: placement {'ok' if report['placement'][key]['ok'] else 'FAILED'} {report['placement'][key]}", flush=True)
        report["timings"][key] = {}
        for s in ["float32"] + (SWITCHES if key == keys[0] or not dry else []):
            if s == "cuda_graphs" and device.type != "cuda": continue
            if s == "compile" and (dry or key != "glow32"):   # compiling takes minutes: GLOW 32x32 on the GPU only
                report["timings"][key][s] = dict(skipped="dry run: compiling takes minutes on a CPU" if dry else "one model only (compile time)")
                continue
            if time.time() - t0 > args.budget_minutes * 60 * (0.75 if s != "float32" else 0.9):
                report["timings"][key][s] = dict(skipped="time budget"); continue
            try:
                r = measure(key, arch_preset, device, batch, [] if s == "float32" else [s], dry, min_seconds)
                if dry and s == "compile": r["note"] = "dry run: compiled on the CPU"
            except Exception as e:
                r = dict(error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
                report["errors"].append(dict(model=key, switch=s, trace=traceback.format_exc()[-2000:]))
            report["timings"][key][s] = r
            print(f"  {key} {s:14s} " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)
            if device.type == "cuda": torch.cuda.empty_cache()
        write(report, out)   # what is measured so far survives a cut-off run
    per_image = {k: dict(train=v["float32"]["train_ms_per_image"], pgd=v["float32"]["pgd_ms_per_image"],
                         forward=v["float32"]["forward_ms_per_image"])
                 for k, v in report["timings"].items() if "train_ms" in v.get("float32", {})}
    report["per_image_ms"] = per_image
    if set(per_image) == set(MODELS):
        report["projection"] = {}
        for preset in [p for p in PRESETS if p in ("gpu", "paper")]:
            for gpus in (1, 8):
                h = projected_hours(per_image, preset, gpus)
                report["projection"][f"{preset}, {gpus} GPU"] = {t: round(float(v), 2) for t, v in h.groupby("table", sort=False).hours.sum().items()}
        print("projected hours (float32):")
        for k, v in report["projection"].items(): print(f"  {k}: " + ", ".join(f"{t} {h:.1f} h" for t, h in v.items()) + f"; total {sum(v.values()):.1f} h")
    report["seconds"] = round(time.time() - t0, 1)
    write(report, out)
    print(f"wrote {out} in {report['seconds']} s; placement {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
