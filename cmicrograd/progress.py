"""The training progress bar: one updating line in a terminal and in a Jupyter notebook,
a line every tenth of the run in a log file or pipe.

Jupyter's output area understands a carriage return, so the terminal's "\\r" line works
there too; what must not happen is a wall of lines, or thousands of output messages
(the notebook throttles a kernel that sends too many), hence at most ten redraws a
second.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, Optional, TextIO

REDRAW_SECONDS = 0.1  # the updating line is redrawn at most this often (and at the end)
WIDTH = 24  # characters of the bar itself


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell: Jupyter, VS Code, Colab).

    Never imports IPython: if nothing imported it, this is not a notebook."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    if get is None:
        return False
    try:
        shell = get()
    except Exception:  # a broken or half-initialised IPython is not a notebook we can draw in
        return False
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def updates_in_place(stream: TextIO) -> bool:
    """Whether ``stream`` shows a "\\r" as going back to the start of the line: a
    terminal, or a notebook's own output streams."""
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except ValueError:  # a closed stream
        return False
    return (stream is sys.stdout or stream is sys.stderr) and in_notebook()


def format_number(x: float) -> str:
    """A loss as people read it: 4 decimals at ordinary sizes, 4 significant digits
    with an exponent otherwise (never a 165-digit number), ``nan`` / ``inf`` as such."""
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.4f}"
    return f"{x:.3e}" if math.isfinite(x) else str(x)


class Progress:
    """``[####....]  k/N  loss L  accuracy A%`` after k of N steps.

    ``in_place`` None asks ``updates_in_place(stream)``: True redraws one line (at most
    every ``REDRAW_SECONDS``, and always the first and last states), False writes a
    line at every tenth of the run. ``clock`` is for tests."""

    def __init__(self, total: int, stream: TextIO, enabled: bool = True, in_place: Optional[bool] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled and total > 0
        self.in_place = updates_in_place(stream) if in_place is None and self.enabled else bool(in_place)
        self.every = max(1, total // 10)
        self.clock = clock
        self._last_draw: Optional[float] = None
        self._drawn = 0  # length of the line on screen (in place), to blank what is left of it

    def line(self, done: int, loss: float, acc: float) -> str:
        filled = int(WIDTH * done / self.total)
        bar = "#" * filled + "." * (WIDTH - filled)
        return (f"[{bar}] {done:>{len(str(self.total))}}/{self.total}  loss {format_number(loss)}"
                f"  accuracy {acc * 100:5.1f}%")

    def update(self, done: int, loss: float, acc: float) -> None:
        """Show the loss and accuracy after ``done`` steps (0..total)."""
        if not self.enabled:
            return
        final = done >= self.total
        if self.in_place:
            now = self.clock()
            if not final and self._last_draw is not None and now - self._last_draw < REDRAW_SECONDS:
                return
            self._last_draw = now
            text = self.line(done, loss, acc)
            self.stream.write("\r" + text + " " * max(0, self._drawn - len(text)))
            self._drawn = len(text)
        elif done % self.every == 0 or final:
            self.stream.write(self.line(done, loss, acc) + "\n")
        else:
            return
        self.stream.flush()

    def close(self) -> None:
        """End the updating line, so that what is written next starts on its own line."""
        if self.enabled and self.in_place and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0


__all__ = ["Progress", "format_number", "in_notebook", "updates_in_place"]
