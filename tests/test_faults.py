"""Results that survive faults: a full disk halfway through a rerun and two runs writing into one folder leave one
complete result set; a damaged checkpoint, a resume on other images or another architecture, and bad command-line
values each stop with one line; a misspelled notebook parameter stops the run before anything is created."""
import json, os, subprocess, sys, time
from pathlib import Path

import pytest

from flownb.core.result_sets import check_result_set

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
       "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}

# one experiment's result files, as a notebook writes them: tables, a figure, claims, then the record
RUN = """
import sys, time, errno
import pandas as pd, matplotlib.pyplot as plt
from flownb.experiments.results import save_results, write_claims, claim
from flownb.experiments.records import write_run_record
folder, seed, fail_at = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if fail_at == "figure":   # a full disk while the figure is written: half a file, then ENOSPC
    from matplotlib.figure import Figure
    def full(self, path, **kw):
        open(path, "wb").write(b"\\x89PNG half"); raise OSError(errno.ENOSPC, "No space left on device")
    Figure.savefig = full
started = time.time()
table = pd.DataFrame(dict(eps=[0, 8], bpd=[3.5 + seed, 9.0 + seed])).set_index("eps")
write_claims(folder, "table1_x", [claim("NLL rises", "§5", True, f"seed {seed}")], "cpu", "digits")
fig, ax = plt.subplots(); ax.plot([0, seed + 1])
save_results(folder, {"table1_x": table, "table1_x_all": table.reset_index()}, {"fig1_x": fig, "table1_x_training": fig})
write_run_record(folder, "table1_x", dict(seed=seed), "cpu", started)
"""


def run(folder, seed, fail_at="none"):
    return subprocess.Popen([sys.executable, "-c", RUN, str(folder), str(seed), fail_at], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if not p.name.startswith(".")}


def test_full_disk_during_a_rerun_leaves_the_previous_set(tmp_path):
    "A complete seed-0 set, then a seed-1 rerun whose figure hits a full disk: the seed-0 set stays, byte for byte."
    assert run(tmp_path, 0).wait() == 0
    before = snapshot(tmp_path)
    assert sorted(before) == ["fig1_x.png", "table1_x.csv", "table1_x.json", "table1_x_all.csv", "table1_x_claims.csv",
                              "table1_x_training.png"]
    failed = run(tmp_path, 1, "figure"); _, err = failed.communicate()
    assert failed.returncode != 0 and "No space left on device" in err
    assert snapshot(tmp_path) == before and check_result_set(tmp_path, "table1_x") == []
    assert json.loads((tmp_path/"table1_x.json").read_text())["parameters"]["seed"] == 0
    assert run(tmp_path, 2).wait() == 0                          # the next run publishes, and cleans the dead run's stage
    assert json.loads((tmp_path/"table1_x.json").read_text())["parameters"]["seed"] == 2
    assert not list(tmp_path.glob(".stage.*"))


def test_two_runs_into_one_folder_leave_one_complete_set(tmp_path):
    "Seeds 0 and 1 into one folder at once, a reader polling it: one seed's complete set at the end, no half file seen."
    procs = [run(tmp_path, s) for s in (0, 1)]
    partial = 0
    while any(p.poll() is None for p in procs):
        for f in tmp_path.glob("*.png"):
            try: data = f.read_bytes()
            except FileNotFoundError: continue
            partial += not data.endswith(b"IEND\xaeB`\x82")      # every PNG ends with its IEND chunk
        time.sleep(0.005)
    assert [p.returncode for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    record = json.loads((tmp_path/"table1_x.json").read_text())
    assert check_result_set(tmp_path, "table1_x") == []          # every file is the one the record lists
    seed = record["parameters"]["seed"]
    assert f"seed {seed}" in (tmp_path/"table1_x_claims.csv").read_text() and partial == 0


# --- the command line ------------------------------------------------------------------------------

def train_cli(tmp_path, *args, env=ENV):
    return subprocess.run([sys.executable, "-m", "flownb.training.cli", "--dataset", "digits", "--preset", "smoke", "--no-progress",
                           *args], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def one_line_error(out, *fragments):
    "Failed, with one line on stderr holding every fragment and no traceback."
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert out.returncode != 0 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    for f in fragments: assert f in lines[0], lines[0]
    return lines[0]


def test_command_line_errors_are_one_line(tmp_path):
    (tmp_path/"a-file").write_text("x")
    one_line_error(train_cli(tmp_path, "--checkpoint-dir", "c", "--steps", "0"), "steps must be")
    one_line_error(train_cli(tmp_path, "--checkpoint-dir", "a-file", "--steps", "2"), "a-file is a file, not a folder")
    one_line_error(train_cli(tmp_path, "--checkpoint-dir", "c", "--eps", "-3", "--steps", "2"), "eps")
    empty = tmp_path/"data-here"; empty.mkdir()
    out = train_cli(tmp_path, "--dataset", "mnist", "--checkpoint-dir", "m", "--steps", "2",
                    env={k: v for k, v in ENV.items() if k != "FLOWNB_MIRROR"} | {"FLOWNB_DATA": str(empty)})
    one_line_error(out, str(empty))                              # --data-root follows FLOWNB_DATA
    ok = train_cli(tmp_path, "--checkpoint-dir", "c", "--steps", "2", "--max-grad-norm", "None")
    assert ok.returncode == 0 and json.loads(ok.stdout.splitlines()[-1])["last"]["step"] == 2, ok.stderr[-2000:]


def test_resume_checks_data_architecture_and_integrity(tmp_path):
    first = train_cli(tmp_path, "--checkpoint-dir", "c", "--steps", "4", "--train-limit", "1500")
    assert first.returncode == 0, first.stderr[-2000:]
    one_line_error(train_cli(tmp_path, "--checkpoint-dir", "c", "--steps", "8", "--train-limit", "1000"),
                   "CheckpointError", "was trained on other images", "1,500 images", "1,000 images")
    one_line_error(train_cli(tmp_path, "--checkpoint-dir", "c", "--steps", "8", "--train-limit", "1500", "--model", "realnvp"),
                   "CheckpointError", "holds another architecture", "this model: RealNVP")
    import torch
    ck = tmp_path/"c"/"checkpoint.pt"
    raw = bytearray(ck.read_bytes())
    w = next(v for v in torch.load(ck, weights_only=True)["model"].values() if v.numel() >= 64)
    at = bytes(raw).index(w.numpy().tobytes()) + 16
    raw[at] ^= 0x10; ck.write_bytes(bytes(raw))
    one_line_error(train_cli(tmp_path, "--checkpoint-dir", "c", "--steps", "8", "--train-limit", "1500"),
                   "CheckpointError", "fails the archive's CRC check")


# --- notebook parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("params, message", [
    (("-p", "epsilon", "4"), "unknown parameter 'epsilon': did you mean 'eps'?"),
    (("-r", "device", "cuda:7"), "device = 'cuda:7' is not allowed"),
])
def test_bad_notebook_parameters_stop_before_anything_is_made(tmp_path, params, message):
    env = {k: v for k, v in ENV.items() if k not in ("IN_TEST", "FLOWNB_PRESET")} | {"FLOWNB_RUNS": str(tmp_path/"runs")}
    out = subprocess.run([Path(sys.executable).parent/"papermill", str(REPO/"nbs"/"05_glow_cifar.ipynb"), str(tmp_path/"o.ipynb"),
                          "-p", "preset", "smoke", "-r", "out_dir", str(tmp_path/"results"/"here"), *params],
                         env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode != 0 and f"ParameterError: {message}" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path/"runs").exists() and not (tmp_path/"results").exists()   # nothing trained, no folder made
