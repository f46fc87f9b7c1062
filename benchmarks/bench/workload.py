"""What a workload is: the inputs every workload gets (Context), and the few functions
that make one (Workload): how to measure it, which table rows and which lines under the
table it gives. benchmarks/run.py lists the workloads it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .handwritten import HandwrittenC

Row = List[str]            # one cell per column of report.COLUMNS
Record = Dict[str, Any]    # the whole run, as written by --json: workload key -> result


@dataclass
class Context:
    """What every workload may use: the run's settings (config.settings), the initial
    weights, the data, and which optional engines this machine has."""
    cfg: Dict[str, Any]
    weights: List[float]
    X: np.ndarray
    y: np.ndarray
    have_mg: bool          # micrograd 0.1.0 is installed
    torch_ok: bool         # PyTorch is installed
    hw: HandwrittenC       # the C step (hw.lib is None when it could not be compiled)


def no_rows(result: Dict[str, Any], record: Record) -> List[Row]:
    return []


def no_details(result: Dict[str, Any], record: Record) -> List[str]:
    return []


@dataclass(frozen=True)
class Workload:
    """One thing the benchmark measures.

    run(ctx) measures it and returns its result, a JSON-able dict stored as
    record[key]. A timed workload returns "samples" and "cpu_samples", each
    {variant: [seconds per unit, one per repetition]}; run.py adds their summaries.
    rows(result, record) gives its rows of the table and details(result, record) its
    lines under the table; both may read other workloads' results in `record` (the
    step's rows read the checks). `number` places them: rows and details go in the
    order of the numbers, and a workload without one (the checks) prints its details
    after the numbered ones and has no row. `needs` lists the keys of the workloads
    whose results its rows read: `run.py --only` runs them too.
    """
    key: str
    run: Callable[[Context], Dict[str, Any]]
    rows: Callable[[Dict[str, Any], Record], List[Row]] = no_rows
    details: Callable[[Dict[str, Any], Record], List[str]] = no_details
    number: Optional[int] = None
    needs: Tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Its name in the run's durations: "1 step", "checks"."""
        return self.key if self.number is None else f"{self.number} {self.key}"
