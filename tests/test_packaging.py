"""`pip install .` then running from another directory finds the shipped specs and examples;
the README's commands are the ones CI runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_installed_wheel_finds_package_data(tmp_path):
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(wheel_dir),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(wheel_dir.glob("roofline-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import roofline, roofline.specs as s\n"
        "print(roofline.__file__)\n"
        "print(len(s.list_specs()))\n"
        "r = roofline.analyze(s.data_dir('examples') / 'gpt2.yaml', 'l4')\n"
        "print(r.summary['decode_time_s'].iloc[0] > 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    where, n_specs, ok = out.stdout.split()
    assert where.startswith(str(site)) and int(n_specs) >= 13 and ok == "True"


def readme_block(tag):
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- ci:{tag} -->\s*```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert match, f"README has no <!-- ci:{tag} --> code block"
    return match.group(1).strip()


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    for tag in ("install", "test"):
        assert readme_block(tag)  # the block exists and is not empty
        assert f"ci:{tag}" in ci  # .ci/run extracts and runs that very block


def test_no_file_holds_a_merge_conflict_marker():
    # a README once kept both sides of a merge; git lists the tracked files
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    markers = ("<<<<<<< ", ">>>>>>> ", "=======\n")
    found = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ipynb") or not path.is_file():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(keepends=True), 1):
            if line.startswith(markers):
                found.append(f"{name}:{i}")
    assert not found, f"merge conflict markers in {', '.join(found)}"
