"""``cmicrograd train`` end to end, and every kind of bad input: one line on stderr,
exit code 2, no traceback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from cmicrograd.cli import main


def run(*argv: str):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_short_training_run():
    code, out, err = run("train", "--steps", "5", "--samples", "30")
    assert code == 0, err
    assert out.startswith("trained MLP(2, [16, 16, 1]) on 30 moons points for 5 steps")
    assert "5/5" in err and "loss" in err and "accuracy" in err


def test_default_run_reaches_full_accuracy():
    code, out, _ = run("train", "--quiet")
    assert code == 0
    assert out.rstrip().endswith("accuracy 100.0%"), out


def test_engines_give_the_same_summary_numbers():
    _, compiled, _ = run("train", "--steps", "8", "--samples", "20", "--engine", "compiled", "--quiet")
    _, python, _ = run("train", "--steps", "8", "--samples", "20", "--engine", "python", "--quiet")
    strip = lambda s: s.split("): ")[1]  # noqa: E731 - drop the timing and engine name
    assert strip(compiled) == strip(python)


def test_eager_flag_gives_the_same_numbers():
    _, compiled, _ = run("train", "--steps", "10", "--samples", "30", "--quiet")
    _, eager, _ = run("train", "--steps", "10", "--samples", "30", "--quiet", "--eager")
    assert "compiled step" in compiled and "eager" in eager
    assert compiled.split("): ")[1] == eager.split("): ")[1]


def test_save_load_roundtrip(tmp_path):
    model = tmp_path / "model.json"
    code, out, err = run("train", "--steps", "3", "--hidden", "4", "--save", str(model), "--quiet")
    assert code == 0, err and model.exists()
    assert json.loads(model.read_text())["nouts"] == [4, 1]
    code, out, err = run("train", "--steps", "0", "--load", str(model), "--quiet")
    assert code == 0, err
    assert "MLP(2, [4, 1])" in out


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the [plot] extra; CI installs it")
    png = tmp_path / "boundary.png"
    code, out, err = run("train", "--steps", "2", "--samples", "20", "--plot", str(png), "--quiet")
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def test_csv_data_and_options(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,c,label\n" + "\n".join(f"{i},{i % 3},{-i},{i % 2}" for i in range(12)) + "\n")
    code, out, err = run("train", "--data", str(data), "--steps", "3", "--hidden", "3,2",
                         "--activation", "tanh", "--batch-size", "4", "--lr", "0.5", "--quiet")
    assert code == 0, err
    assert "MLP(3, [3, 2, 1]) on 12 rows of d.csv" in out


def _bad(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD = [
    (["train", "--steps", "-5"], "--steps: must be at least 0"),
    (["train", "--steps", "ten"], "--steps: expected a whole number"),
    (["train", "--lr", "abc"], "--lr: expected a number"),
    (["train", "--lr", "-1"], "--lr: must be a positive"),
    (["train", "--lr", "nan"], "--lr: must be a positive"),
    (["train", "--seed", "x"], "--seed: expected a whole number"),
    (["train", "--hidden", "16,x"], "--hidden: expected layer sizes"),
    (["train", "--hidden", "0"], "--hidden: layer sizes must be at least 1"),
    (["train", "--activation", "gelu"], "--activation: invalid choice"),
    (["train", "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["train", "--batch-size", "1000"], "larger than the data"),
    (["train", "--engine", "gpu"], "--engine: invalid choice"),
    (["train", "--bogus"], "unrecognized arguments"),
    (["train", "--data", "/nonexistent/file.csv"], "--data: no such file"),
    (["train", "--load", "/nonexistent/model.json"], "--load: no such file"),
    ([], "choose a command"),
    (["fly"], "invalid choice"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) or "no command" for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, message):
    code, out, err = run(*argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("cmicrograd: error: ") and message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("name, text, message", [
    ("empty.csv", "", "no data rows"),
    ("ragged.csv", "1,2,1\n1,2\n", "line 2 has 2 columns"),
    ("words.csv", "1,2,1\n1,two,1\n", "'two' is not a number"),
    ("labels.csv", "1,2,5\n1,3,7\n2,2,9\n", "labels must be two classes"),
    ("one.csv", "1\n2\n", "need at least one feature column"),
    ("binary.csv", "\xff\xfe\x00garbage", "not a readable CSV"),
])
def test_bad_data_files(tmp_path, name, text, message):
    path = tmp_path / name
    if name == "binary.csv":
        path.write_bytes(b"\xff\xfe\x00\x81garbage")
    else:
        path.write_text(text)
    code, _, err = run("train", "--data", str(path), "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "cmicrograd.MLP", "version": 1, "nin": 3, "nouts": [1], "parameters": [0, 0, 0, 0]}', "takes 3 inputs"),
    ('{"format": "cmicrograd.MLP", "version": 1, "nin": 2, "nouts": [2], "parameters": [0, 0, 0, 0, 0, 0]}', "2 outputs"),
    ("[]", "must be a JSON object"),
])
def test_bad_model_files(tmp_path, text, message):
    path = _bad(tmp_path, "m.json", text)
    code, _, err = run("train", "--load", path, "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_load_with_hidden_is_refused(tmp_path):
    code, _, err = run("train", "--steps", "1", "--hidden", "3", "--save", str(tmp_path / "m.json"), "--quiet")
    assert code == 0
    code, _, err = run("train", "--load", str(tmp_path / "m.json"), "--hidden", "4")
    assert code == 2 and "--load takes the architecture" in err


def test_directory_as_file(tmp_path):
    code, _, err = run("train", "--data", str(tmp_path))
    assert code == 2 and "is a directory" in err
    code, _, err = run("train", "--steps", "1", "--save", str(tmp_path), "--quiet")
    assert code == 2 and "--save: cannot write" in err


def test_module_entry_point_runs_without_traceback():
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "cmicrograd", "train", "--steps", "2", "--samples", "10"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "trained MLP" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "cmicrograd", "train", "--steps", "-1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
