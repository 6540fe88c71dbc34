"""Models as users name them, offline: a shipped example by name, a checkpoint folder holding config.json,
a Hugging Face hub cache repo or snapshot folder; unknown names get one line listing the shipped names."""

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import roofline
from roofline.cli import main
from roofline.config import resolve_model_path
from roofline.errors import InputFileError
from roofline.specs import data_dir

ROOT = Path(__file__).resolve().parent.parent
AWQ_LLAMA = ROOT / "tests" / "data" / "quant_configs" / "awq-llama-3.1-8b-instruct.json"
SHIPPED = ", ".join(sorted(p.stem for p in (Path(__file__).parents[1] / "examples").glob("*.yaml")))
assert "llama-2-7b" in SHIPPED and "gpt2" in SHIPPED


@pytest.fixture
def elsewhere(tmp_path):
    """Run from a folder that holds no examples/ (as after pip install)."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


def test_shipped_example_by_name_from_another_folder(elsewhere):
    assert resolve_model_path("llama-2-7b") == data_dir("examples") / "llama-2-7b.yaml"
    out = CliRunner().invoke(main, ["analyze", "llama-2-7b", "--gpu", "a10", "--phase", "decode"])
    assert out.exit_code == 0, out.output
    assert "decode: 23.2 ms per step" in out.output  # the README's figure for examples/llama-2-7b.yaml


def test_a_file_of_that_name_wins_over_the_example(elsewhere):
    (elsewhere / "llama-2-7b").write_text((ROOT / "tests" / "data" / "tiny_llama.yaml").read_text())
    assert resolve_model_path("llama-2-7b") == Path("llama-2-7b")
    assert roofline.load_model("llama-2-7b").name == "tiny-llama"


def test_checkpoint_folder_is_read_as_its_config_json(tmp_path):
    folder = tmp_path / "Meta-Llama-3.1-8B-Instruct-AWQ-INT4"
    folder.mkdir()
    shutil.copy(AWQ_LLAMA, folder / "config.json")
    (folder / "model.safetensors").write_bytes(b"")
    assert resolve_model_path(folder) == folder / "config.json"
    out = CliRunner().invoke(main, ["analyze", str(folder), "--gpu", "h100-sxm", "--phase", "decode"])
    assert out.exit_code == 0, out.output
    assert "weights 5.73 GB" in out.output  # the checkpoint's AWQ int4, not bf16
    assert out.output.startswith("Meta-Llama-3.1-8B-Instruct-AWQ-INT4 on h100-sxm")  # named after its folder


def hub_repo(root: Path, snapshots=("abc123",), main_ref="abc123") -> Path:
    repo = root / "hub" / "models--hugging-quants--Meta-Llama-3.1-8B-Instruct-AWQ-INT4"
    for snap in snapshots:
        (repo / "snapshots" / snap).mkdir(parents=True)
        shutil.copy(AWQ_LLAMA, repo / "snapshots" / snap / "config.json")
    if main_ref:
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(main_ref + "\n")
    return repo


def test_hub_cache_snapshot_and_repo_folders(tmp_path):
    repo = hub_repo(tmp_path, snapshots=("old111", "abc123"))
    snapshot = repo / "snapshots" / "abc123"
    assert resolve_model_path(snapshot) == snapshot / "config.json"
    assert resolve_model_path(repo) == snapshot / "config.json"  # the snapshot refs/main names
    assert roofline.load_model(repo).name == "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"
    out = CliRunner().invoke(main, ["analyze", str(repo), "--gpu", "a10", "--summary", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["summary"][0]["weight_bytes"] == pytest.approx(5.7279e9, rel=1e-4)


def test_hub_repo_with_several_snapshots_and_no_ref_asks_for_one(tmp_path):
    repo = hub_repo(tmp_path, snapshots=("aaa", "bbb"), main_ref=None)
    with pytest.raises(InputFileError, match=r"2 snapshots hold a config.json \(aaa, bbb\) and refs/main names none"):
        resolve_model_path(repo)


def test_folder_without_config_json(tmp_path):
    out = CliRunner().invoke(main, ["analyze", str(tmp_path), "--gpu", "a10"])
    assert out.exit_code == 1
    assert (
        out.output.strip()
        == f"Error: model folder {tmp_path} holds no config.json; pass the checkpoint folder or a model file"
    )


def test_unknown_name_lists_the_shipped_examples(elsewhere):
    out = CliRunner().invoke(main, ["analyze", "llama-2-7", "--gpu", "a10"])
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [
        f"Error: unknown model 'llama-2-7' (did you mean 'llama-2-7b'?): no such file or folder, and no shipped "
        f"example of that name; shipped: {SHIPPED} (or pass a model YAML, a config.json or a checkpoint folder)"
    ]


def test_a_missing_path_is_named_as_a_path(elsewhere):
    out = CliRunner().invoke(main, ["analyze", "models/llama.yaml", "--gpu", "a10"])
    assert out.exit_code == 1
    assert out.output.strip() == "Error: model file not found: models/llama.yaml"


@pytest.mark.parametrize("command", ["advise", "report"])
def test_other_commands_take_names_too(elsewhere, command):
    args = [command, "llama-2-7b", "--gpu", "a10", "--phase", "decode"]
    if command == "report":
        args += ["--out", str(elsewhere / "out")]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    if command == "report":
        assert (elsewhere / "out" / "inputs" / "model.yaml").read_text() == (
            data_dir("examples") / "llama-2-7b.yaml"
        ).read_text()


@pytest.mark.slow
def test_installed_wheel_analyses_an_example_by_name(tmp_path):
    """After `pip install`, from a folder with no checkout: `roofline analyze llama-2-7b --gpu a10`."""
    import subprocess
    import sys

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
    code = "from roofline.cli import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", code, "analyze", "llama-2-7b", "--gpu", "a10", "--phase", "decode"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "decode: 23.2 ms per step" in out.stdout


def test_report_says_where_the_weight_format_came_from(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(AWQ_LLAMA, folder / "config.json")
    out = CliRunner().invoke(
        main, ["report", str(folder), "--gpu", "a10", "--phase", "decode", "--out", str(tmp_path / "r")]
    )
    assert out.exit_code == 0, out.output
    text = (tmp_path / "r" / "report.md").read_text()
    # markdown-escaped as report.md escapes text read from files: renders as quantization_config
    assert "Weights int4 from checkpoint quantization\\_config (awq, 4-bit int4, group 128" in text
    assert (tmp_path / "r" / "inputs" / "model.json").read_text() == AWQ_LLAMA.read_text()
