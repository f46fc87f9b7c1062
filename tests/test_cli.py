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
    _, compiled, _ = run("train", "--steps", "10", "--samples", "30", "--quiet", "--compiled")
    _, eager, _ = run("train", "--steps", "10", "--samples", "30", "--quiet", "--eager")
    _, auto, _ = run("train", "--steps", "10", "--samples", "30", "--quiet")
    assert "compiled step" in compiled and "eager" in eager
    assert compiled.split("): ")[1] == eager.split("): ")[1] == auto.split("): ")[1]


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


# ---- more than two classes, optimizers ------------------------------------------------
def _accuracy(summary: str) -> float:
    return float(summary.rsplit("accuracy ", 1)[1].split("%")[0])


def test_spiral_defaults_reach_95_percent():
    code, out, err = run("train", "--dataset", "spiral", "--classes", "3", "--quiet")
    assert code == 0, err
    assert out.startswith("trained MLP(2, [16, 16, 3]) on 300 spiral points in 3 classes for 300 steps")
    assert "adam" in out and _accuracy(out) >= 95.0, out


@pytest.mark.parametrize("argv, model", [
    (["--dataset", "yinyang", "--samples", "60"], "MLP(2, [16, 16, 3]) on 60 yin-yang points in 3 classes"),
    (["--dataset", "spiral", "--classes", "5", "--samples", "50"], "MLP(2, [16, 16, 5]) on 50 spiral points in 5 classes"),
    (["--dataset", "spiral", "--classes", "2", "--samples", "40"], "MLP(2, [16, 16, 1]) on 40 spiral points for"),
    (["--optimizer", "adamw", "--samples", "30"], "MLP(2, [16, 16, 1]) on 30 moons points"),
])
def test_datasets_classes_and_optimizers(argv, model):
    code, out, err = run("train", "--steps", "5", "--quiet", *argv)
    assert code == 0, err
    assert model in out and out.count("\n") == 1


def test_class_index_csv_and_k_regions(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the [plot] extra; CI installs it")
    data = tmp_path / "k.csv"
    data.write_text("x,y,label\n" + "\n".join(f"{i % 7},{i % 5},{i % 4}" for i in range(40)) + "\n")
    code, out, err = run("train", "--data", str(data), "--steps", "3", "--quiet", "--plot", str(tmp_path / "k"))
    assert code == 0, err
    assert "MLP(2, [16, 16, 4]) on 40 rows of k.csv in 4 classes" in out
    assert f"wrote the decision boundary to {tmp_path / 'k.png'}" in out
    assert (tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"


def test_summary_reports_what_the_bar_ends_with():
    code, out, err = run("train", "--steps", "1", "--samples", "20")
    assert code == 0, err
    assert " for 1 step in " in out
    last = err.strip().splitlines()[-1]
    assert last.split("]")[1].strip().startswith("1/1")
    bar_numbers = last.split("loss ")[1].split()  # [loss, "accuracy", "50.0%"]
    assert f"loss {bar_numbers[0]}, accuracy {bar_numbers[2]}" in out


def test_losses_print_in_a_readable_format(monkeypatch):
    import cmicrograd.train as train_module

    real = train_module.batch_loss

    def huge(*args, **kwargs):
        loss, acc = real(*args, **kwargs)
        loss.data = 1.25e160
        return loss, acc

    monkeypatch.setattr(train_module, "batch_loss", huge)
    code, out, err = run("train", "--steps", "1", "--samples", "20", "--quiet")
    assert code == 0 and "loss 1.250e+160, accuracy" in out  # not 161 digits


def test_version():
    import cmicrograd

    out = io.StringIO()
    code = main(["--version"], out=out)
    assert code == 0
    proc = subprocess.run([sys.executable, "-m", "cmicrograd", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"cmicrograd {cmicrograd.__version__}"


# ---- found before training, one line, exit 2 ----------------------------------------
BEFORE_TRAINING = [
    (["--samples", "1"], "--samples: must be at least 2"),
    (["--samples", "10000000000000"], "needs at least"),
    (["--hidden", "100000,100000"], "MLP(2, [100000, 100000, 1]) has 10,000,500,001 parameters"),
    (["--batch-size", "4", "--samples", "1000000000"], "graph over 1,000,000,000 rows needs at least"),
    (["--plot", "out.txtx"], "--plot: matplotlib cannot write .txtx files; use one of"),
    (["--save", "/nonexistent/dir/m.json"], "--save: cannot write /nonexistent/dir/m.json: no such directory"),
    (["--plot", "/nonexistent/dir/b.png"], "--plot: cannot write /nonexistent/dir/b.png: no such directory"),
    (["--noise", "1e308"], "--noise 1e+308 is too large"),
    (["--dataset", "moons", "--classes", "3"], "--classes: moons has 2 classes"),
    (["--dataset", "yinyang", "--classes", "2"], "--classes: yinyang has 3 classes"),
    (["--dataset", "spiral", "--samples", "4", "--classes", "5"], "--samples: 4 points cannot hold 5 classes"),
    (["--classes", "1"], "--classes: must be at least 2"),
    (["--eager", "--compiled"], "not allowed with argument --eager"),
    (["--dataset", "spiral", "--data", "x.csv"], "not allowed with argument"),
    (["--optimizer", "rmsprop"], "--optimizer: invalid choice"),
]


@pytest.mark.parametrize("argv, message", BEFORE_TRAINING, ids=[" ".join(a) for a, _ in BEFORE_TRAINING])
def test_refused_before_training(monkeypatch, argv, message):
    if "--plot" in argv:
        pytest.importorskip("matplotlib", reason="--plot needs the [plot] extra; CI installs it")
    import cmicrograd.train as train_module

    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    code, out, err = run("train", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("cmicrograd: error: ") and message in err, err


def test_out_of_memory_is_one_line(monkeypatch):
    import cmicrograd.train as train_module

    def oom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(train_module, "train", oom)
    code, out, err = run("train", "--quiet")
    assert code == 2 and err == "cmicrograd: error: out of memory: use smaller --hidden, --samples or --batch-size\n"


def test_data_options_need_generated_data(tmp_path):
    data = _bad(tmp_path, "d.csv", "1,2,1\n2,1,-1\n")
    code, _, err = run("train", "--data", data, "--samples", "10")
    assert code == 2 and "--samples and --noise make generated data" in err


@pytest.mark.parametrize("text, message", [
    ("1,2,1\n2,3,2\n3,1,3\n", "no row has label 0 (class indices start at 0"),
    ("1,2,0.5\n2,3,1\n", "labels must be class indices 0, 1, 2, ...; found 0.5"),
])
def test_bad_class_labels(tmp_path, text, message):
    code, _, err = run("train", "--data", _bad(tmp_path, "d.csv", text), "--steps", "1")
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_load_names_the_file_once(tmp_path):
    path = _bad(tmp_path, "bad.json", "{oops")
    code, _, err = run("train", "--load", path, "--steps", "1")
    assert code == 2 and err.count(path) == 1, err


def test_plot_without_suffix_names_the_png(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the [plot] extra; CI installs it")
    code, out, err = run("train", "--steps", "1", "--samples", "10", "--quiet", "--plot", str(tmp_path / "noext"))
    assert code == 0, err
    assert out.splitlines()[-1] == f"wrote the decision boundary to {tmp_path / 'noext.png'}"
    assert (tmp_path / "noext.png").exists() and not (tmp_path / "noext").exists()


# ---- what is not bad input but still not a meaningful result ---------------------------
def test_divergence_stops_with_a_message():
    code, out, err = run("train", "--lr", "1e200", "--quiet")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "training diverged: the loss is nan at step" in err, err


def test_divergence_ends_the_progress_line_first():
    code, _, err = run("train", "--lr", "1e200")
    assert code == 1 and err.endswith("(try a smaller --lr)\n") and "\ncmicrograd: error: training diverged" in err


@pytest.mark.parametrize("text, argv, warning", [
    ("1,2,1\n2,3,1\n3,1,1\n4,4,1\n5,2,1\n", [], "the data has only one class (label 1)"),
    (None, ["--samples", "3"], "only 3 points for 2 classes"),
])
def test_trivial_accuracy_is_flagged(tmp_path, text, argv, warning):
    if text is not None:
        argv = ["--data", _bad(tmp_path, "one.csv", text)]
    code, out, err = run("train", "--steps", "3", "--quiet", *argv)
    assert code == 0 and f"cmicrograd: warning: {warning}" in err, err


def test_no_warning_for_a_real_run():
    code, _, err = run("train", "--steps", "3", "--quiet")
    assert code == 0 and err == ""


def test_already_perfect_before_training_is_flagged(monkeypatch):
    import cmicrograd.plot as plot_module
    from cmicrograd.datasets import make_moons

    labels = make_moons(20, 0.1, seed=42)[1]  # the CLI's points with --seed 42
    monkeypatch.setattr(plot_module, "predict_classes", lambda model, X: labels)  # right everywhere
    code, _, err = run("train", "--steps", "2", "--samples", "20", "--quiet")
    assert code == 0 and "the untrained model already classifies every point right" in err, err


def test_available_memory_is_known_here():
    """The size checks need it; on Linux, macOS and Windows it is known."""
    from cmicrograd.cli import _available_memory

    available = _available_memory()
    if sys.platform in ("linux", "darwin", "win32"):
        assert available is not None and available > 10**8
