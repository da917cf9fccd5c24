"""Caches two processes share: two first loads of one dataset into one data root, a live process's temporary files
left alone by another run of train(), and a damaged checkpoint in the runs cache reported as a CheckpointError."""
import os
import subprocess
import sys
import tarfile
import io
from pathlib import Path

import pytest
import torch

from flownb.data.mirror import sha256_file
from flownb.core.shared_files import owner_tag
from flownb.training.runs import experiment_data, trained_flow
from flownb.training.spec import run_spec
from flownb.training.loop import train
from flownb.training.checkpoints import CheckpointError
from flownb.flows.architectures import build_model

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
       "OMP_NUM_THREADS": "1"}

# a reader that starts as soon as the destination is complete and reads every file while the other process finishes
FIRST_LOAD = '''
import sys, time
from pathlib import Path
from flownb.data.mirror import unpack_mirror_files
mirror, dest, sha = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
def slow_unpack(src, into):   # a big archive: the unpack takes a while
    time.sleep(2)
    (into/"images").mkdir(); [(into/"images"/f"{i}.txt").write_text(str(i)) for i in range(200)]
out = unpack_mirror_files(("archive.bin",), dest, mirror, {"archive.bin": sha}, unpack=slow_unpack)
for _ in range(20):   # read it all, repeatedly, while the other process may be finishing its own load
    assert sorted(int(p.stem) for p in (out/"images").iterdir()) == list(range(200))
    time.sleep(0.05)
print("ok")
'''


def test_two_first_loads_of_one_dataset(tmp_path):
    mirror = tmp_path/"mirror"; mirror.mkdir()
    (mirror/"archive.bin").write_bytes(b"x" * 1000)
    dest = tmp_path/"data"/"mirror"/"ds"
    cmd = [sys.executable, "-c", FIRST_LOAD, str(mirror), str(dest), sha256_file(mirror/"archive.bin")]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs): assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    assert sum("waiting for another process unpacking" in err for _, err in outs) == 1   # the second waited
    assert sorted(p.name for p in dest.parent.iterdir()) == [".ds.lock", "ds"]        # no temporary folder left


def test_train_leaves_a_live_process_temporary_files_alone(tmp_path):
    "A run starting in a folder where another live process is writing its checkpoint must not delete that file."
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path/f".checkpoint.pt.{owner_tag(other.pid)}.abcd1234.tmp"; live.write_bytes(b"being written")
        dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
        dead = tmp_path/f".log.csv.{owner_tag(int(dead_pid))}.tmp"; dead.write_text("left by a killed run")
        torch.manual_seed(0)
        train(build_model("glow", "digits", "smoke"), torch.rand(32, 1, 8, 8).mul(255).round().div(255), steps=2, batch_size=16,
              checkpoint_dir=tmp_path, progress=False)
        assert live.exists() and not dead.exists()
        assert not [p for p in tmp_path.glob("*.tmp") if p != live]   # its own temporary files published, none left
    finally: other.kill(); other.wait()


def test_damaged_checkpoint_in_the_runs_cache(tmp_path):
    "Item 6: trained_flow meets a damaged checkpoint: the CheckpointError naming the file and what to do."
    data = experiment_data("digits", None, 64, 4)
    spec, kw = run_spec("glow", data, arch_preset="smoke", steps=2, batch_size=16, warmup_steps=1), dict(root=tmp_path, progress=False)
    run = trained_flow(spec, data, **kw)
    ckpt = run.run_dir/"checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])   # damaged: cut short
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {ckpt}.*delete it to train afresh") as e:
        trained_flow(spec, data, **kw)
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    ckpt.unlink()                                # as the message says: then it trains afresh
    assert not trained_flow(spec, data, **kw).reused
