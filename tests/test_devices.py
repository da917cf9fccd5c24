"""The GPU path, tested where CI runs (CPU): an explicit device reaches every tensor the models see, training
across processes through torchrun (`gpus=2` = two gloo processes) gives the one-process run's key and weights,
and the GPU check's dry run exercises its code and writes its projection."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch

from flownb.core.devices import every_module_stays_on, OffDeviceTensor
from flownb.training.runs import experiment_data, trained_flow
from flownb.training.spec import run_spec
from flownb.experiments.robustness import trio_budget, trio_experiment

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
       "OMP_NUM_THREADS": "1"}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])   # CI has no GPU: the CUDA case runs on GPU machines


@pytest.fixture(scope="module")
def digits():
    return experiment_data("digits", None, n_train=256, n_test=8)


@pytest.mark.parametrize("device", DEVICES)
def test_explicit_device_reaches_every_tensor_of_the_trio_experiment(tmp_path, device):
    "Training, attacks, noise baseline, OOD attack and figures of Table 1 (smoke, digits): every module input on the device."
    seen = []
    budget = trio_budget("smoke", n_test=4, clean_steps=6, robust_steps=2, ood_n=1, ood_steps=2, eval_attack_steps=2)
    with every_module_stays_on(device, seen):
        res = trio_experiment("glow", "digits", 4, 4, budget, {}, "smoke", root=tmp_path, progress=False, device=device)
    assert len(seen) > 1000 and {d.type for _, d in seen} == {device}
    assert all(next(r.model.parameters()).device.type == device for r in res["runs"].values())
    assert torch.isfinite(torch.tensor(res["table"].iloc[:, 0].to_numpy())).all()


def test_the_watch_catches_a_tensor_left_on_another_device():
    "The check the test above relies on does fail: a model fed a tensor from another device raises, naming the module."
    from flownb.flows.architectures import build_model
    m = build_model("glow", "digits", "smoke")
    with every_module_stays_on("cpu"), pytest.raises(OffDeviceTensor, match="tensor on meta"):
        m.log_prob(torch.zeros(2, 1, 8, 8, device="meta"))


def test_bad_device_and_gpus_fail_before_training(tmp_path, digits):
    spec = run_spec("glow", digits)
    with pytest.raises(ValueError, match="device must be"): trained_flow(spec, digits, root=tmp_path, device="gpu0")
    with pytest.raises(ValueError, match="gpus must be"): trained_flow(spec, digits, root=tmp_path, device="cpu", gpus=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"): trained_flow(spec, digits, root=tmp_path, device="cuda")
    assert not any(tmp_path.iterdir()), "nothing may be written before the arguments are checked"


def test_two_processes_train_the_same_run_as_one(tmp_path, digits):
    "gpus=2 on the CPU: two gloo processes under torchrun, the same run key, weights equal to one process's within float rounding."
    spec = run_spec("glow", digits, arch_preset="smoke", steps=6, batch_size=32, warmup_steps=2)
    kw = dict(progress=False, device="cpu")
    one = trained_flow(spec, digits, root=tmp_path/"one", gpus=1, **kw)
    two = trained_flow(spec, digits, root=tmp_path/"two", gpus=2, **kw)
    assert one.run_dir.name == two.run_dir.name and not two.reused
    assert (two.run_dir/"checkpoint.pt").exists() and json.loads((two.run_dir/"config.json").read_text()) == one.config
    for (k, a), b in zip(one.model.state_dict().items(), two.model.state_dict().values()):
        if a.is_floating_point(): assert (a - b).abs().max() <= 1e-4 * max(1.0, float(a.abs().max())), k
        else: assert torch.equal(a, b), k
    again = trained_flow(spec, digits, root=tmp_path/"two", gpus=2, **kw)   # reused like any other run, no processes started
    assert again.reused
    adv_spec = run_spec("glow", digits, "adversarial", arch_preset="smoke", steps=2, batch_size=32, warmup_steps=2, eps=8,
                        attack_steps=1)
    adv = trained_flow(adv_spec, digits, root=tmp_path/"one", gpus=2, **kw)
    assert adv.spec.train.attack_group == 16 and adv.key != adv_spec.key()   # each process attacks its half with its own generator: a key of its own


def test_gpu_check_dry_run_writes_its_measurements_and_projection(tmp_path):
    "`benchmarks/gpu_check.py --dry-run`: the same code as on a GPU, on the CPU with the smoke architectures."
    out = tmp_path/"check.json"
    run = subprocess.run([sys.executable, str(REPO/"benchmarks"/"gpu_check.py"), "--dry-run", "--out", str(out)], env=ENV,
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["end_to_end"]["ok"] and report["end_to_end"]["reused_on_cpu"]
    assert all(v["ok"] for v in report["placement"].values()) and set(report["placement"]) == {"glow32", "glow64", "realnvp64"}
    for key, t in report["timings"].items():
        assert t["float32"]["train_ms"] > 0 and t["float32"]["pgd_ms"] > 0 and t["float32"]["forward_ms"] > 0, key
    assert {"bf16", "channels_last"} <= set(report["timings"]["glow32"])
    p1, p8 = report["projection"]["paper, 1 GPU"], report["projection"]["paper, 8 GPU"]
    assert set(p1) == {"table1", "table2", "table3"}
    assert abs(sum(p1.values()) / sum(p8.values()) - 8) < 0.05   # rounded to 0.01 h each
