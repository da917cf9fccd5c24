"""What a new user meets first, end to end: the smoke notebooks on a machine with neither the offline mirror nor a
network, progress on the terminal that runs papermill, runs that never overwrite the committed results, parameters
checked before anything trains, and two runs sharing one runs folder."""
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

EXPERIMENTS = ["05_glow_cifar", "06_glow_lsun", "07_realnvp", "08_adversarial_samples", "09_stability", "09a_beyond_paper", "09b_budget_curve"]


def no_mirror_env(tmp_path, **extra):
    "The environment of a fresh machine: no FLOWNB_MIRROR, an empty data root, its own runs folder."
    env = {k: v for k, v in os.environ.items() if k not in ("FLOWNB_MIRROR", "IN_TEST", "FLOWNB_PRESET")}
    (tmp_path/"empty-data").mkdir(exist_ok=True)
    return dict(env, OMP_NUM_THREADS="1", FLOWNB_DATA=str(tmp_path/"empty-data"), FLOWNB_RUNS=str(tmp_path/"runs"), **extra)


def papermill(venv_bin, repo_root, notebook, out, *params, env, cwd, timeout=900):
    "papermill as the README shows it, without --log-output; returns the finished process (stdout, stderr as text)."
    return subprocess.run([venv_bin/"papermill", str(repo_root/"nbs"/f"{notebook}.ipynb"), str(out), *params],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def git_status(repo_root):
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo_root,
                          capture_output=True, text=True, check=True).stdout


def test_smoke_run_without_mirror_or_out_dir(repo_root, venv_bin, tmp_path):
    "Items 1-3: no mirror, no network, no out_dir: digits stand in (labelled), progress reaches stderr, figures/ untouched."
    before = git_status(repo_root)
    committed = {p.name: p.read_bytes() for p in (repo_root/"figures").iterdir()}
    run = papermill(venv_bin, repo_root, "05_glow_cifar", tmp_path/"out.ipynb", "-p", "preset", "smoke",
                    env=no_mirror_env(tmp_path), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    # progress bars of training and attacks reach the terminal that runs papermill, without --log-output
    assert re.search(r"train clean: +\d+%", run.stderr) and re.search(r"train hybrid: +\d+%", run.stderr), run.stderr[-2000:]
    assert "attack sweep" in run.stderr
    # results went to a folder of their own under runs/, which the notebook names
    results = sorted((tmp_path/"runs"/"results"/"05_glow_cifar").glob("smoke-*"))
    assert len(results) == 1
    nb = json.loads((tmp_path/"out.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert f"results go to {results[0]}" in printed and "SUBSTITUTED: cifar10 -> digits" in printed
    record = json.loads((results[0]/"table1_glow_cifar10.json").read_text())
    assert record["data"]["source"] == "scikit-learn"
    assert record["data"]["label"].endswith("(substituted for cifar10, not available here)")
    table = pd.read_csv(results[0]/"table1_glow_cifar10.csv")   # its columns say the data are digits, the paper's CIFAR-10
    assert table["Clean (ours, digits)"].notna().all() and "Clean (paper, cifar10)" in table
    # nothing in the checkout changed: not figures/, not data/
    assert git_status(repo_root) == before
    assert {p.name: p.read_bytes() for p in (repo_root/"figures").iterdir()} == committed
    assert not list((tmp_path/"empty-data").iterdir())


def test_smoke_notebooks_without_mirror(repo_root, venv_bin, tmp_path):
    "Item 1: every other experiment notebook at the smoke preset with neither mirror nor network, as `make test` runs them."
    (tmp_path/"tmp").mkdir()
    env = no_mirror_env(tmp_path, FLOWNB_PRESET="smoke", TMPDIR=str(tmp_path/"tmp"))
    skip = "^(?!(" + "|".join(EXPERIMENTS[1:]) + r")\.ipynb$)"
    run = subprocess.run([venv_bin/"nbdev_test", "--skip_file_re", skip, "--do_print"], cwd=repo_root, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert all(f"{name}.ipynb" in run.stdout for name in EXPERIMENTS[1:]), run.stdout  # they did run
    assert not list((tmp_path/"empty-data").iterdir())
    assert not list((tmp_path/"tmp").glob("flownb-*"))   # item 7: no temporary folders left behind


def test_readme_training_command_runs(repo_root, tmp_path):
    "Item 7: the README's command-line example, as printed (only the folder moved and the run shortened)."
    line = next(l for l in (repo_root/"README.md").read_text().splitlines() if "`python -m flownb.training.cli " in l)
    args = line.split("`python -m flownb.training.cli ", 1)[1].split("`", 1)[0].split()
    at = args.index("--checkpoint-dir"); args[at + 1] = str(tmp_path/"demo")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_root)}
    run = subprocess.run([sys.executable, "-m", "flownb.training.cli", *args, "--steps", "4", "--no-progress"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["last"]["step"] == 4
    assert (tmp_path/"demo"/"checkpoint.pt").exists()


@pytest.mark.parametrize("params, message", [
    (("-p", "eps", "0"), "eps = 0 is not allowed: use a number of pixel units in (0, 255]"),
    (("-p", "eps", "abc"), "eps = 'abc' is not allowed"),
    (("-p", "attack_steps", "-1"), "attack_steps = -1 is not allowed: use None (the preset's) or an integer >= 1"),
    (("-r", "out_dir", "{tmp}/a-file"), "out_dir = '{tmp}/a-file' is not allowed (it is a file)"),
])
def test_bad_parameters_fail_before_training(repo_root, venv_bin, tmp_path, params, message):
    "Item 4: at the cpu preset (minutes of training per model) a bad value fails within seconds, saying what is allowed."
    (tmp_path/"a-file").write_text("not a folder")
    params, message = [p.format(tmp=tmp_path) for p in params], message.format(tmp=tmp_path)
    started = time.time()
    run = papermill(venv_bin, repo_root, "05_glow_cifar", tmp_path/"out.ipynb", "-p", "preset", "cpu", *params,
                    env=no_mirror_env(tmp_path), cwd=tmp_path, timeout=300)
    seconds = time.time() - started
    assert run.returncode != 0 and f"ParameterError: {message}" in run.stderr, run.stderr[-2000:]
    assert not (tmp_path/"runs").exists()   # nothing trained, no data read
    print(f"{' '.join(params)}: failed after {seconds:.1f} s")
    assert seconds < 60


def test_two_concurrent_runs_share_one_runs_folder(repo_root, venv_bin, tmp_path):
    "Item 5: two smoke runs of 05 at once on one runs folder: both succeed, one trains, and their tables are equal."
    env = no_mirror_env(tmp_path)
    def one(i):
        return papermill(venv_bin, repo_root, "05_glow_cifar", tmp_path/f"out{i}.ipynb", "-p", "preset", "smoke",
                         "-r", "out_dir", str(tmp_path/f"figures{i}"), env=env, cwd=tmp_path)
    with ThreadPoolExecutor(2) as pool: runs = list(pool.map(one, (0, 1)))
    for run in runs: assert run.returncode == 0, run.stderr[-3000:]
    tables = [pd.read_csv(tmp_path/f"figures{i}"/"table1_glow_cifar10.csv") for i in (0, 1)]
    pd.testing.assert_frame_equal(tables[0], tables[1])
    records = [json.loads((tmp_path/f"figures{i}"/"table1_glow_cifar10.json").read_text()) for i in (0, 1)]
    assert {m: r["run"] for m, r in records[0]["runs"].items()} == {m: r["run"] for m, r in records[1]["runs"].items()}
    assert sum(r["reused"] for rec in records for r in rec["runs"].values()) == 3   # each flow trained once, by one of them
    leftovers = [p for p in (tmp_path/"runs").rglob("*.tmp")]
    assert not leftovers, leftovers
