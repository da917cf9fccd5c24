"""The notebooks are the source: the library must be their export, they must be committed clean, and `make paper`
runs a notebook with its parameters."""
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
    dirty = [str(p.relative_to(repo_root/"nbs")) for p in notebooks(repo_root)
             if p.read_text() != (tmp_path/"nbs"/p.relative_to(repo_root/"nbs")).read_text()]
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


def test_a_failed_run_says_why_in_one_line_last(repo_root, venv_bin, tmp_path):
    "A bad parameter stops `make paper` with one line naming the notebook, the parameter and where the traceback is: no traceback on the terminal."
    committed = (repo_root/"nbs"/"00_theory.ipynb").read_bytes()
    run = subprocess.run(["make", "paper", "NB=00_theory", "PRESET=smoke", f"RUN_DIR={tmp_path}", f"VENV={venv_bin.parent}",
                          "PAPERMILL_ARGS=-p seed -1"], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0
    lines = [l for l in run.stderr.splitlines() if l.strip() and not l.startswith("make")]
    assert lines[-1].startswith("FAILED: 00_theory failed at ") and "seed" in lines[-1] and str(tmp_path/"00_theory.ipynb") in lines[-1], run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "PapermillExecutionError" not in run.stderr
    assert (repo_root/"nbs"/"00_theory.ipynb").read_bytes() == committed


def test_make_paper_runs_a_notebook_with_its_parameters(repo_root, venv_bin, tmp_path):
    "`make paper` for real, at the smoke preset: its plan first, the parameters reach the run, nbs/ keeps its committed copy."
    committed = (repo_root/"nbs"/"00_theory.ipynb").read_bytes()
    out, runs = tmp_path/"figures", tmp_path/"notebooks"
    run = subprocess.run(["make", "paper", "NB=00_theory", "PRESET=smoke", "SEED=3", f"OUT_DIR={out}", f"RUN_DIR={runs}",
                          f"VENV={venv_bin.parent}"],
                         cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert run.stdout.index("make paper: 1 notebook(s) at the smoke preset") < run.stdout.index("flownb-run")
    record = json.loads((out/"theory_run.json").read_text())
    assert record["preset"] == "smoke" and record["parameters"]["seed"] == 3
    for name in ("fig2_optimal_attacks_2d.png", "fig3_tradeoff.png", "theory_claims.csv", "fig3_tradeoff.csv"):
        assert (out/name).stat().st_size > 0, name
    assert (runs/"00_theory.ipynb").exists() and (repo_root/"nbs"/"00_theory.ipynb").read_bytes() == committed
