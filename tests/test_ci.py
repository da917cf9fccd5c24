"""CI runs what the README tells a newcomer to run: the commands of `.ci/run` are the README's quick-start commands."""
import re
import shlex


def quick_start_commands(readme:str)->list:
    "The commands of the README's quick-start code block, without their comments."
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines() if line.split("#", 1)[0].strip()]


def ci_commands(script:str)->list:
    "The commands `.ci/run` runs, each as (environment changes, command): `env -u X` and `X=...` prefixes split off."
    out = []
    for line in script.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "set ", "cd ", "export ")): continue
        words, env = shlex.split(line, posix=True), []
        while words and (words[0] in ("env", "-u") or re.match(r"^[A-Z_]+=", words[0]) or (env and env[-1] == "-u")):
            env.append(words.pop(0))
        out.append((env, " ".join(words)))
    return out


def test_ci_runs_the_readme_quick_start(repo_root):
    readme = (repo_root/"README.md").read_text()
    quick = quick_start_commands(readme)
    ci = ci_commands((repo_root/".ci"/"run").read_text())
    commands = [c for _, c in ci]
    assert commands[0] == "make chromium"                                   # the browser for the docs checks, then the tests
    assert [c for c in commands[1:]] == [c for c in quick if c.startswith("make test")]   # every quick-start test, in order
    env = next(e for e, c in ci if c == "make test")
    assert env == ["env", "-u", "FLOWNB_MIRROR"]                            # `make test` as a newcomer runs it: no mirror
    assert any(e.startswith("FLOWNB_MIRROR=") for e in next(e for e, c in ci if c == "make test-data"))
    assert "export FLOWNB_MIRROR" not in (repo_root/".ci"/"run").read_text()


def test_readme_names_the_data_tests(repo_root):
    "The README says which tests need data, and the marker that selects them is the one `make test-data` runs."
    readme = (repo_root/"README.md").read_text()
    assert "tests/test_data.py" in readme and "`make test-data`" in readme
    makefile = (repo_root/"Makefile").read_text()
    assert "pytest tests/ -q -m data" in makefile and "-m 'not data'" in (repo_root/"pyproject.toml").read_text()
