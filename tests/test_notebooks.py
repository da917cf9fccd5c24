"""The notebooks are the source: the library must be their export, they must be committed clean,
experiment parameters must reach papermill, and `make paper` must pass parameters through."""
import json
import shutil
import subprocess
import sys

import nbformat
import pytest


def notebooks(root):
    return sorted(p for p in (root/"nbs").rglob("[!_.]*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_library_is_the_export_of_the_notebooks(repo_root, venv_bin, tmp_path):
    for name in ("nbs", "flownb"): shutil.copytree(repo_root/name, tmp_path/name)
    for name in ("settings.ini", "pyproject.toml"): shutil.copy(repo_root/name, tmp_path/name)
    subprocess.run([venv_bin/"nbdev_export"], cwd=tmp_path, check=True, capture_output=True)
    exported = {p.relative_to(tmp_path/"flownb"): p.read_text() for p in (tmp_path/"flownb").rglob("*.py")}
    committed = {p.relative_to(repo_root/"flownb"): p.read_text() for p in (repo_root/"flownb").rglob("*.py")}
    assert exported.keys() == committed.keys()
    stale = [str(k) for k in exported if exported[k] != committed[k]]
    assert not stale, f"flownb/ is out of sync with nbs/ (run nbdev_export): {stale}"


def test_notebooks_are_committed_clean(repo_root, venv_bin, tmp_path):
    shutil.copytree(repo_root/"nbs", tmp_path/"nbs")
    shutil.copy(repo_root/"settings.ini", tmp_path/"settings.ini")
    subprocess.run([venv_bin/"nbdev_clean"], cwd=tmp_path, check=True, capture_output=True)
    dirty = [p.name for p in notebooks(repo_root) if p.read_text() != (tmp_path/"nbs"/p.name).read_text()]
    assert not dirty, f"run nbdev_clean: {dirty}"
    for p in notebooks(repo_root):
        nb = nbformat.read(p, as_version=4)
        assert all(c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), p.name


def test_clean_keeps_the_papermill_parameters_tag(repo_root, venv_bin, tmp_path):
    "nbdev_clean drops cell metadata unless settings.ini allows `tags`; papermill then ignores -p silently."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("eps = 1", metadata={"tags": ["parameters"]})])
    (tmp_path/"nbs").mkdir()
    nbformat.write(nb, tmp_path/"nbs"/"probe.ipynb")
    shutil.copy(repo_root/"settings.ini", tmp_path/"settings.ini")
    subprocess.run([venv_bin/"nbdev_clean"], cwd=tmp_path, check=True, capture_output=True)
    assert nbformat.read(tmp_path/"nbs"/"probe.ipynb", as_version=4).cells[0].metadata.get("tags") == ["parameters"]


def test_every_parameters_cell_names_preset_seed_and_out_dir(repo_root):
    parameterised = 0
    for p in notebooks(repo_root):
        cells = [c for c in nbformat.read(p, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) <= 1, f"{p.name}: more than one parameters cell"
        if cells:
            parameterised += 1
            for name in ("preset", "seed", "out_dir"):
                assert f"\n{name} =" in "\n" + cells[0].source, f"{p.name}: parameters cell lacks `{name}`"
    assert parameterised >= 1


def test_papermill_parameters_reach_the_theory_notebook(repo_root, venv_bin, tmp_path):
    "A real papermill run at the smoke preset: injected values must win over the defaults."
    out = tmp_path/"figures"
    run = subprocess.run([venv_bin/"papermill", str(repo_root/"nbs"/"00_theory.ipynb"), str(tmp_path/"run.ipynb"),
                          "-p", "preset", "smoke", "-p", "seed", "3", "-p", "out_dir", str(out), "--log-level", "WARNING"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((out/"theory_run.json").read_text())
    assert record["preset"] == "smoke" and record["parameters"]["seed"] == 3
    for name in ("fig2_optimal_attacks_2d.png", "fig3_tradeoff.png", "theory_claims.csv", "fig3_tradeoff.csv"):
        assert (out/name).stat().st_size > 0, name


def test_make_paper_passes_parameters_through(repo_root):
    cmd = subprocess.run(["make", "-n", "-B", "paper", "NB=00_theory", "EPS=8", "SEED=2", "PRESET=cpu"],
                         cwd=repo_root, check=True, capture_output=True, text=True).stdout
    line = next(l for l in cmd.splitlines() if "papermill" in l)
    for piece in ("nbs/$nb.ipynb", "-p preset cpu", "-p eps 8", "-p seed 2"):
        assert piece in line, (piece, line)
    assert "for nb in 00_theory;" in cmd
    assert "from flownb.experiments.records import paper_plan" in cmd and "' cpu 00_theory" in cmd   # what it will run and how long, first
