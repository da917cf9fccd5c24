"""The experiments on the real data sets, which `make test` (no data needed) does not touch: CIFAR-10, CelebA and MNIST
from the offline mirror (`FLOWNB_MIRROR`) or torchvision's files in data/. Run by `make test-data`."""
import json
import os
import subprocess

import pandas as pd
import pytest

from flownb.data.datasets import DATASETS
from flownb.experiments.results import column_labels, column_title
from flownb.experiments.robustness import TRIO_TITLES

pytestmark = pytest.mark.data
REAL_SOURCES = {name: ("torchvision", f"mirror:{info.mirror_files[0]}") for name, info in DATASETS.items() if info.mirror_files}


@pytest.fixture(scope="module")
def data_env():
    "The environment of a machine with the real data: FLOWNB_MIRROR must name the mirror (make test-data checks it too)."
    mirror = os.environ.get("FLOWNB_MIRROR", "")
    assert mirror and os.path.isdir(mirror), "these tests need the real data: set FLOWNB_MIRROR to the dataset mirror (data/README.md)"
    return {k: v for k, v in os.environ.items() if k not in ("IN_TEST", "FLOWNB_PRESET")} | {"OMP_NUM_THREADS": "1"}


def smoke_run(repo_root, venv_bin, tmp_path, env, notebook, *params):
    "A notebook at the smoke preset into tmp_path/figures, with its own runs folder; returns the results folder."
    run = subprocess.run([venv_bin/"papermill", str(repo_root/"nbs"/f"{notebook}.ipynb"), str(tmp_path/f"{notebook}.ipynb"),
                          "-p", "preset", "smoke", "-r", "out_dir", str(tmp_path/"figures"), *params, "--log-level", "WARNING"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=900, env=dict(env, FLOWNB_RUNS=str(tmp_path/"runs")))
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp_path/"figures"


def test_table1_on_cifar10(repo_root, venv_bin, tmp_path, data_env):
    "Table 1 on CIFAR-10 itself: its columns are the paper's own ('ours' / 'paper'), and the audit was written."
    figures = smoke_run(repo_root, venv_bin, tmp_path, data_env, "05_glow_cifar", "-p", "n_test", "6")
    data = json.loads((figures/"table1_glow_cifar10.json").read_text())["data"]
    assert data["dataset"] == "cifar10" and data["source"] in REAL_SOURCES["cifar10"], data
    table = pd.read_csv(figures/"table1_glow_cifar10.csv")
    assert column_labels(data["dataset"], "cifar10") == dict(ours_label="ours", paper_label="paper")
    assert table[column_title(TRIO_TITLES["clean"], "ours")].notna().all()
    audit = pd.read_csv(figures/"table1_glow_cifar10_attack_audit.csv")
    assert set(audit.kind) == {"attack", "ood attack"} and audit.fraction_mean.notna().all()


def test_table2_on_celeba(repo_root, venv_bin, tmp_path, data_env):
    "Table 2: the mirror's LSUN has 6 images, so CelebA stands in, and the columns name both data sets."
    figures = smoke_run(repo_root, venv_bin, tmp_path, data_env, "06_glow_lsun", "-p", "n_test", "4")
    record = json.loads(next(figures.glob("table2_glow_*.json")).read_text())
    data = record["data"]
    assert data["source"] in REAL_SOURCES.get(data["dataset"], ()) or data["dataset"] == "lsun_bedroom", data
    table = pd.read_csv(next(p for p in figures.glob("table2_glow_*.csv") if p.stem == record["name"]))
    assert table[column_title(TRIO_TITLES["clean"], "ours", **column_labels(data["dataset"], "lsun_bedroom"))].notna().all()


def test_table3_on_celeba(repo_root, venv_bin, tmp_path, data_env):
    "Table 3's RealNVP on the mirror's CelebA sample, its attack rising with the iterations."
    figures = smoke_run(repo_root, venv_bin, tmp_path, data_env, "07_realnvp", "-r", "dataset", "celeba", "-p", "n_test", "4")
    record = json.loads((figures/"table3_realnvp.json").read_text())
    assert record["data"]["celeba"]["source"] in REAL_SOURCES["celeba"], record["data"]
    ours = pd.read_csv(figures/"table3_realnvp.csv").set_index("steps")["celeba (ours)"]
    assert ours.notna().all() and ours.iloc[-2] > ours.iloc[0]   # the last attack row (before 'noise') above the clean row


def test_beyond_paper_scores_mnist(repo_root, venv_bin, tmp_path, data_env):
    "09a's OOD detection on MNIST from the mirror: AUROC at every ε, in [0, 1]."
    figures = smoke_run(repo_root, venv_bin, tmp_path, data_env, "09a_beyond_paper", "-r", "anomalies", "mnist")
    stem = json.loads((figures/"beyond_glow_cifar10.json").read_text())["name"]
    au = pd.read_csv(figures/f"{stem}_auroc.csv")
    assert set(au.anomaly) == {"mnist"} and au.auroc.between(0, 1).all() and au.eps.nunique() >= 2
