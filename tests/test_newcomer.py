"""What a new user meets first, end to end: the smoke notebooks on a machine with neither the offline mirror nor a
network, progress on the terminal that runs papermill, runs that never overwrite the committed results, parameters
checked before anything trains, and two runs sharing one runs folder."""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from flownb.core.result_sets import check_result_set

from flownb.experiments.registry import EXPERIMENTS

# the experiment notebooks tests/test_experiments.py runs with parameters of its own; 05 runs in the pair below
RUN_WITH_PARAMETERS = ("05_glow_cifar", "07_realnvp", "09a_beyond_paper", "09b_budget_curve")


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


def test_two_smoke_runs_without_mirror_or_out_dir(repo_root, venv_bin, tmp_path):
    """Items 1-3 and 5: two runs of 05 at once with parameters, as a newcomer starts them: no mirror, no network, no out_dir,
    one runs folder. Digits stand in (labelled), progress reaches stderr, each flow is trained once and reused by the
    other run, the results land in one folder of their own, and nothing in the checkout changes."""
    before = git_status(repo_root)
    committed = {p.name: p.read_bytes() for p in (repo_root/"figures").iterdir()}
    env = no_mirror_env(tmp_path)
    def one(i):
        return papermill(venv_bin, repo_root, "05_glow_cifar", tmp_path/f"out{i}.ipynb", "-p", "preset", "smoke",
                         "-p", "eps", "4", "-p", "n_test", "5", env=env, cwd=tmp_path)
    with ThreadPoolExecutor(2) as pool: runs = list(pool.map(one, (0, 1)))
    for run in runs: assert run.returncode == 0, run.stderr[-3000:]
    # progress bars of training and attacks reach the terminal that runs papermill, without --log-output
    stderr = runs[0].stderr + runs[1].stderr
    assert re.search(r"train clean: +\d+%", stderr) and re.search(r"train hybrid: +\d+%", stderr), stderr[-2000:]
    assert "attack sweep" in runs[0].stderr and "attack sweep" in runs[1].stderr
    # the terminal also says what runs, at which preset, where its results go, and that digits stand in
    for run in runs:
        assert re.search(r"05_glow_cifar: preset smoke, expected .* results to .*runs/results/05_glow_cifar/smoke-", run.stderr)
        assert "SUBSTITUTED: cifar10 -> digits" in run.stderr
    # both runs' results went to the one folder of their parameters under runs/, which each notebook names
    results = sorted((tmp_path/"runs"/"results"/"05_glow_cifar").glob("smoke-*"))
    assert len(results) == 1 and results[0].name.startswith("smoke-cifar10-unavailable-"), results
    for i in (0, 1):   # each executed copy says what made it, that run and no other: nothing in it claims figures/
        nb = json.loads((tmp_path/f"out{i}.ipynb").read_text())
        shown = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/markdown", ""))
                        for c in nb["cells"] for o in c.get("outputs", []))
        assert "**This run:** preset **smoke**" in shown and f"`{results[0]}/`" in shown and "`eps = 4`" in shown
        assert "SUBSTITUTED: cifar10 -> digits" in shown
        assert "figures/" not in shown and not [c for c in nb["cells"] if "executed" in c["metadata"].get("tags", [])]
    assert check_result_set(results[0], "table1_glow_cifar10") == []   # one whole result set, not a mix of the two
    record = json.loads((results[0]/"table1_glow_cifar10.json").read_text())
    assert record["parameters"]["eps"] == 4 and record["data"]["n_test"] == 5 and record["preset"] == "smoke"
    assert record["data"]["source"] == "scikit-learn"
    assert record["data"]["label"].endswith("(substituted for cifar10, not available here)")
    # each flow trained once, by one of the runs: the other waited for it and reused it
    trained = [f"{m}: {k}" for k in (0, 1) for m, r in json.loads(_printed_runs(tmp_path/f"out{k}.ipynb")).items()
               if r != "reused"]
    assert len(trained) == 3, trained
    table = pd.read_csv(results[0]/"table1_glow_cifar10.csv")   # its columns say the data are digits, the paper's CIFAR-10
    assert list(table.eps) == [0, 1, 2, 4]
    assert table["Clean (ours, digits)"].notna().all() and list(table["Clean (paper, cifar10)"]) == [3.4, 6.3, 14, 320]
    for name in ("fig1_glow_cifar10.png", "fig4_glow_cifar10.png", "table1_glow_cifar10_claims.csv"):
        assert (results[0]/name).stat().st_size > 0
    assert not [p for p in (tmp_path/"runs").rglob("*.tmp")]
    # nothing in the checkout changed: not figures/, not data/
    assert git_status(repo_root) == before
    assert {p.name: p.read_bytes() for p in (repo_root/"figures").iterdir()} == committed
    assert not list((tmp_path/"empty-data").iterdir())


def _printed_runs(notebook)->str:
    "The runs cell's output of an executed 05 (model -> (run key, 'reused' or how long it trained)), as JSON: model -> status."
    nb = json.loads(Path(notebook).read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "reused" in "".join(c["source"])
                and "res[\"runs\"]" in "".join(c["source"]))
    text = "".join("".join(o.get("data", {}).get("text/plain", "")) for o in cell["outputs"])
    runs = ast.literal_eval(text)
    return json.dumps({m: status for m, (key, status) in runs.items()})


def test_smoke_notebooks_without_mirror(repo_root, venv_bin, tmp_path):
    "Item 1: the experiment notebooks no other test runs, at the smoke preset with neither mirror nor network."
    (tmp_path/"tmp").mkdir()
    env = no_mirror_env(tmp_path, FLOWNB_PRESET="smoke", TMPDIR=str(tmp_path/"tmp"))
    others = [e.name for e in EXPERIMENTS if e.name not in RUN_WITH_PARAMETERS]
    skip = "^(?!(" + "|".join(others) + r")\.ipynb$)"
    run = subprocess.run([venv_bin/"nbdev_test", "--skip_file_re", skip, "--do_print"], cwd=repo_root, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert others and all(f"{name}.ipynb" in run.stdout for name in others), run.stdout  # they did run
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
    again = subprocess.run([sys.executable, "-m", "flownb.training.cli", *args, "--steps", "4"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)   # the same run, finished: said so
    assert again.returncode == 0 and "is already complete at step 4: nothing trained" in again.stderr, again.stderr[-2000:]
    assert not re.search(r"train \w+: ", again.stderr)   # no progress bar for work that is not done


@pytest.mark.parametrize("params, message", [
    (("-p", "eps", "0"), "eps = 0 is not allowed: use a number of pixel units in (0, 255]"),
    (("-p", "eps", "abc"), "eps = 'abc' is not allowed"),
    (("-p", "attack_steps", "-1"), "attack_steps = -1 is not allowed: use None (the preset's) or an integer >= 1"),
    (("-r", "out_dir", "{tmp}/a-file"), "out_dir = '{tmp}/a-file' is not allowed (it is a file)"),
])
def test_bad_parameters_fail_before_training(repo_root, venv_bin, tmp_path, params, message):
    "Item 4: at the cpu preset (minutes of training per model) a bad value fails before any data or training, saying what is allowed."
    (tmp_path/"a-file").write_text("not a folder")
    params, message = [p.format(tmp=tmp_path) for p in params], message.format(tmp=tmp_path)
    run = papermill(venv_bin, repo_root, "05_glow_cifar", tmp_path/"out.ipynb", "-p", "preset", "cpu", *params,
                    env=no_mirror_env(tmp_path), cwd=tmp_path, timeout=300)
    assert run.returncode != 0 and f"ParameterError: {message}" in run.stderr, run.stderr[-2000:]
    assert not (tmp_path/"runs").exists()   # nothing trained: no runs folder, not even for results
    assert "train clean" not in run.stderr and "attack sweep" not in run.stderr   # no progress bar of any work started
    assert not list((tmp_path/"empty-data").iterdir())   # no data read or unpacked


