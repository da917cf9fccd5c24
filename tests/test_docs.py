"""The notebooks read as documentation: nbdev's doc processing runs, the offline site builds from notebooks with
outputs and reads well in headless Chromium, executed notebooks are published only from runs that made figures/,
and committed outputs show the tables of figures/."""
import os
import re
import shutil
import subprocess

import nbformat
import pytest

from flownb.tools.docs_check import check_site, chromium_path, site_problems
from flownb.tools.docs_site import build_site, site_notebooks, site_pages
from flownb.experiments.registry import COMMITTED_NOTEBOOKS
from flownb.tools.executed import MAX_NOTEBOOK_BYTES, publish_cli, publish_executed, run_note, table_mismatches

needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="no Chromium here: `make chromium` (as root) installs it, or set CHROMIUM")


def has_outputs(path):
    return any(c.get("outputs") for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def theory_run(repo_root, venv_bin, tmp_path_factory):
    "00_theory executed at the smoke preset by papermill, its results in a folder of their own: (executed notebook, results)."
    tmp = tmp_path_factory.mktemp("theory")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}   # the kernel's inline backend: figures in the notebook
    run = subprocess.run([venv_bin/"papermill", str(repo_root/"nbs"/"00_theory.ipynb"), str(tmp/"00_theory.ipynb"), "-p", "preset", "smoke",
                          "-p", "out_dir", str(tmp/"results"), "--log-level", "WARNING"], capture_output=True, text=True, cwd=tmp, timeout=900, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp/"00_theory.ipynb", tmp/"results"


@pytest.fixture(scope="module")
def site_repo(repo_root, theory_run, tmp_path_factory):
    "A copy of nbs/ and figures/ in which 00_theory carries the outputs of a real (smoke) run, published as make paper publishes."
    root = tmp_path_factory.mktemp("repo")
    for name in ("nbs", "figures"): shutil.copytree(repo_root/name, root/name, ignore=shutil.ignore_patterns("_*", ".*"))
    shutil.copy(repo_root/"settings.ini", root/"settings.ini")
    publish_executed(theory_run[0], root/"nbs"/"00_theory.ipynb", run_note("smoke", {"preset": "smoke"}, "results in a test folder"))
    return root


def test_doc_processing_runs(repo_root, venv_bin, tmp_path):
    """nbdev_proc_nbs executes every exported cell and every cell with an import in it (even one inside a function):
    such a cell must not need names from cells nbdev does not run."""
    for name in ("nbs", "flownb"): shutil.copytree(repo_root/name, tmp_path/name, ignore=shutil.ignore_patterns("_quarto.yml", "nbdev.yml", "sidebar.yml"))
    for name in ("settings.ini", "pyproject.toml"): shutil.copy(repo_root/name, tmp_path/name)
    run = subprocess.run([venv_bin/"nbdev_proc_nbs", "--n_workers", "0"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900, env={**os.environ, "FLOWNB_PRESET": "smoke", "IN_TEST": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(list((tmp_path/"_proc").rglob("*.ipynb"))) >= len(site_notebooks(repo_root/"nbs"))


def test_publishing_an_executed_notebook(repo_root, theory_run, site_repo, tmp_path):
    nb = nbformat.read(site_repo/"nbs"/"00_theory.ipynb", as_version=4)
    assert nb.cells[1].metadata.tags == ["executed"] and "**smoke** preset" in nb.cells[1].source
    assert not [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])], "the parameters tag must stay"
    assert all(c.execution_count is None for c in nb.cells if c.cell_type == "code") and has_outputs(site_repo/"nbs"/"00_theory.ipynb")
    # a smoke run is never published: nbs/ stays as it was
    dest = tmp_path/"00_theory.ipynb"; shutil.copy(repo_root/"nbs"/"00_theory.ipynb", dest)
    publish_cli(executed=str(theory_run[0]), dest=str(dest))
    assert dest.read_bytes() == (repo_root/"nbs"/"00_theory.ipynb").read_bytes()


def test_an_executed_notebook_shows_the_tables_it_wrote(theory_run):
    problems, matched = table_mismatches(*theory_run)
    assert not problems, problems
    assert matched >= 1, "00_theory shows no table of the CSVs it wrote: the checker checked nothing"


def test_every_notebook_is_committed_executed(repo_root):
    """On a code host every notebook shows its outputs and which preset made them: a library notebook in a note under its
    title, an experiment notebook (papermill's, at the top of nbs/) in its own outputs, so that a copy run by anyone
    describes that run and no other."""
    notebooks = [p for p in site_notebooks(repo_root/"nbs") if p.stem != "index"]
    assert len(notebooks) >= 30
    assert [p.name for p in notebooks if not has_outputs(p)] == []
    def cells(p): return nbformat.read(p, as_version=4).cells
    def preset_note(p): return next((c.source for c in cells(p)[:3] if "executed" in c.metadata.get("tags", [])), "")
    def shown(p): return " ".join(str(o.get("text", "")) + " ".join(map(str, o.get("data", {}).values())) for c in cells(p) for o in c.get("outputs", []))
    experiments = [p for p in notebooks if p.parent == repo_root/"nbs"]
    library = [p for p in notebooks if p not in experiments]
    assert len(experiments) >= 9 and [p.name for p in experiments if preset_note(p)] == [], "a static note under an experiment's title"
    assert [p.name for p in experiments if not re.search(r"preset \**(cpu|gpu|paper)\b", shown(p))] == []
    unnamed = [p.name for p in library if "preset on 20" not in preset_note(p)]
    assert unnamed == [], "no note naming the preset under the title"


def test_committed_notebooks_show_each_figure_once(repo_root):
    "A figure a library function returns is drawn where the notebook shows it, not again at the end of the cell that made it."
    import hashlib
    twice = []
    for p in site_notebooks(repo_root/"nbs"):
        seen = set()
        for i, c in enumerate(nbformat.read(p, as_version=4).cells):
            for o in c.get("outputs", []):
                png = o.get("data", {}).get("image/png")
                if png is None: continue
                h = hashlib.sha256(png.encode()).hexdigest()
                if h in seen: twice.append(f"{p.name}: cell {i}")
                seen.add(h)
    assert twice == [], twice


def test_committed_outputs_show_the_tables_of_figures(repo_root):
    "The notebooks whose runs made figures/ show its tables (the library notebooks' demonstrations wrote to scratch folders)."
    executed = [p for p in site_notebooks(repo_root/"nbs") if p.stem in COMMITTED_NOTEBOOKS]
    assert len(executed) >= 7 and all(map(has_outputs, executed))
    problems = [line for p in executed for line in table_mismatches(p, repo_root/"figures")[0]]
    assert not problems, "\n".join(problems)


def test_committed_notebooks_stay_small(repo_root):
    big = [f"{p.name}: {p.stat().st_size/1e6:.1f} MB" for p in site_notebooks(repo_root/"nbs") if p.stat().st_size > MAX_NOTEBOOK_BYTES]
    assert not big, big


@needs_chromium
def test_site_reads_well_in_chromium(site_repo, tmp_path):
    """The real site (every notebook of nbs/, 00_theory with its outputs) built with mkdocs, served locally and read page by
    page in headless Chromium: equations typeset, images loaded, nothing fetched off the site, navigation, search."""
    site, pages = site_repo/"_docs", site_pages(site_repo/"nbs")
    order = [p.relative_to(site).as_posix() for p in build_site(site_repo/"nbs", site)]
    assert order == list(pages) and order[0] == "index.html" and "flows/05_likelihood.html" in order
    reports = check_site(site, tmp_path/"screenshots")
    assert site_problems(reports, order, pages, site) == []
    assert pages["00_theory.html"] >= 20 and reports["00_theory.html"]["math"] >= pages["00_theory.html"]
    assert sum(i["width"] > 0 for i in reports["00_theory.html"]["images"]) >= 2, "00_theory's figures are not on its page"
    assert sum(i["width"] > 0 for i in reports["index.html"]["images"]) >= 2, "the landing page's figures are not on it"
    assert reports["flows/05_likelihood.html"]["toc"] >= 1 and "api-doc" in (site/"flows/05_likelihood.html").read_text()
    assert reports["search"]["hits"] >= 1
    assert all(p.stat().st_size > 10_000 for p in (tmp_path/"screenshots").glob("*.png"))
    assert len(list((tmp_path/"screenshots").glob("*.png"))) == len(order)


@needs_chromium
def test_the_site_check_catches_a_page_with_raw_tex_and_a_cdn(site_repo, tmp_path):
    """A page of the built site whose MathJax comes from a CDN (as nbconvert's template has it): its equations stay raw
    TeX and a request leaves the site."""
    built, site = site_repo/"_docs", tmp_path/"site"
    if not (built/"index.html").is_file(): build_site(site_repo/"nbs", built)
    shutil.copytree(built, site, ignore=shutil.ignore_patterns("_screenshots"))
    page = site/"flows"/"05_likelihood.html"
    page.write_text(page.read_text().replace('src="../assets/mathjax/MathJax.js"', 'src="https://cdn.example.org/MathJax.js"'))
    for other in site.rglob("*.html"):   # two pages left to read: the landing page (search) and the planted one
        if other not in (page, site/"index.html"): other.unlink()
    pages = {p: n for p, n in site_pages(site_repo/"nbs").items() if p in ("index.html", "flows/05_likelihood.html")}
    problems = site_problems(check_site(site, tmp_path/"shots"), list(pages), pages, site)
    assert any("shows raw TeX" in p for p in problems), problems
    assert any("asks a host other than the site for https://cdn.example.org/MathJax.js" in p for p in problems), problems
    assert any(p.startswith("flows/05_likelihood.html: 0 of its") for p in problems), problems
    assert not [p for p in problems if p.startswith("index.html") and "TeX" in p], "the landing page kept its MathJax"


def test_make_executed_library_runs_a_library_notebook(repo_root, venv_bin, tmp_path):
    "`make executed-library` for real on one small library notebook at the smoke preset: its executed copy, nbs/ untouched."
    committed = (repo_root/"nbs"/"core"/"01_presets.ipynb").read_bytes()
    run = subprocess.run(["make", "executed-library", "LIBRARY_NBS=core/01_presets", "PRESET=smoke", f"RUN_DIR={tmp_path}",
                          f"VENV={venv_bin.parent}"], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert has_outputs(tmp_path/"library"/"core"/"01_presets.ipynb")
    assert (repo_root/"nbs"/"core"/"01_presets.ipynb").read_bytes() == committed   # a smoke run never replaces the committed copy


def test_readme_and_index_list_every_notebook_in_reading_order(repo_root):
    "The README's notebook table and the landing page's reading order name every notebook of nbs/, in the site's order."
    import re
    names = [p.relative_to(repo_root/"nbs").with_suffix("").as_posix() for p in site_notebooks(repo_root/"nbs")][1:]  # no index
    readme = [m.group(1) for m in re.finditer(r"^\| `((?:[a-z]+/)?\d\d[a-z]?_[a-z0-9_]+)` \|", (repo_root/"README.md").read_text(), re.M)]
    assert readme == names, set(readme) ^ set(names) or "README's order differs from the site's"
    index = next(c.source for c in nbformat.read(repo_root/"nbs"/"index.ipynb", as_version=4).cells if c.source.startswith("## Reading order"))
    linked = re.findall(r"\| \[((?:[a-z]+/)?\d\d[a-z]?_[a-z0-9_]+)\]\(\1\.ipynb\) \|", index)
    assert linked == names, set(linked) ^ set(names) or "the index's order differs from the site's"


def test_readme_time_of_make_paper_is_its_plan(repo_root):
    "The README's expected time of `make paper` at the cpu preset is the total the plan prints (the registry's times)."
    from flownb.experiments.registry import paper_plan, notebook_files
    value, unit = paper_plan("cpu", notebook_files()).splitlines()[-2].split()[-2:]   # e.g. '~4.1', 'h'
    assert f"about {value.lstrip('~')} {unit} in all" in (repo_root/"README.md").read_text()


def test_readme_cpu_budgets_are_the_plans(repo_root):
    "The README's preset table gives the cpu preset's longest table notebook and the two studies the plan's minutes."
    from flownb.experiments.registry import EXPERIMENTS, format_minutes
    row = next(line for line in (repo_root/"README.md").read_text().splitlines() if line.startswith("| `cpu` |"))
    minutes = {e.name: e.minutes["cpu"] for e in EXPERIMENTS}
    studies = [name for name in minutes if name.startswith("09") and name[2].isalpha()]   # 09a, 09b: beyond the paper
    longest = max(m for name, m in minutes.items() if name not in studies)
    assert f"≤ {format_minutes(longest)} per table notebook" in row, row
    for name in studies: assert f"`{name[:3]}` {format_minutes(minutes[name])}" in row, (name, row)
