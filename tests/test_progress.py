"""The progress bar's rendering, without a terminal or Jupyter: one updating line where
"\\r" works (a terminal, a notebook), a line per tenth of the run elsewhere."""

from __future__ import annotations

import io
import sys
import types

import pytest

from cmicrograd.progress import Progress, format_number, in_notebook, updates_in_place


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("x, text", [
    (0.012, "0.0120"), (0.0, "0.0000"), (12345.678, "12345.6780"), (-2.5, "-2.5000"),
    (1.5e-5, "1.500e-05"), (10.0**160, "1.000e+160"), (123456.0, "1.235e+05"),
    (float("nan"), "nan"), (float("inf"), "inf"),
])
def test_format_number(x, text):
    assert format_number(x) == text


def test_one_updating_line_redrawn_at_most_ten_times_a_second():
    stream, clock = io.StringIO(), Clock()
    bar = Progress(1000, stream, in_place=True, clock=clock)
    for k in range(1000):
        clock.now = k * 0.001  # a step per millisecond: one second in all
        bar.update(k, 1.0 / (k + 1), 0.5)
    bar.update(1000, 0.0005, 1.0)
    bar.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    draws = text.split("\r")[1:]
    assert 10 <= len(draws) <= 12  # every 100 ms, plus the first and the last
    assert draws[0].startswith("[" + "." * 24 + "]    0/1000  loss 1.0000  accuracy  50.0%")
    assert draws[-1].startswith("[" + "#" * 24 + "] 1000/1000  loss 5.000e-04  accuracy 100.0%")


def test_a_shorter_line_blanks_what_the_longer_one_left():
    stream, clock = io.StringIO(), Clock()
    bar = Progress(2, stream, in_place=True, clock=clock)
    bar.update(0, 123456789.0, 0.5)
    bar.update(2, 0.5, 1.0)
    first, last = stream.getvalue().split("\r")[1:]
    assert len(last) == len(first) and last.endswith(" ")


def test_plain_lines_where_carriage_returns_do_not_work():
    stream = io.StringIO()
    bar = Progress(100, stream, in_place=False)
    for k in range(100):
        bar.update(k, 0.5, 0.5)
    bar.update(100, 0.25, 1.0)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert [line.split("]")[1].split("/")[0].strip() for line in lines] == [str(k) for k in range(0, 101, 10)]
    assert "\r" not in stream.getvalue() and lines[-1].endswith("loss 0.2500  accuracy 100.0%")


def test_disabled_or_empty_writes_nothing():
    for bar in (Progress(10, io.StringIO(), enabled=False), Progress(0, io.StringIO())):
        bar.update(0, 1.0, 1.0)
        bar.close()
        assert bar.stream.getvalue() == ""


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        if self.closed:
            raise ValueError("I/O operation on closed file")  # as real files do
        return True


def test_where_lines_update_in_place(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not in_notebook()
    assert updates_in_place(_FakeTerminal())
    assert not updates_in_place(io.StringIO())
    assert not updates_in_place(sys.stderr) or sys.stderr.isatty()

    class ZMQInteractiveShell:  # what Jupyter's kernel runs (Colab's shell subclasses it)
        pass

    class ColabShell(ZMQInteractiveShell):
        pass

    for shell in (ZMQInteractiveShell, ColabShell):
        monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=shell))
        assert in_notebook()
        assert updates_in_place(sys.stderr) and updates_in_place(sys.stdout)
        assert not updates_in_place(io.StringIO())  # a file the user passed stays a file
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not in_notebook()  # IPython imported, but a terminal IPython or plain Python


def test_closed_stream_is_not_a_terminal():
    stream = _FakeTerminal()
    stream.close()
    assert not updates_in_place(stream)
