"""Machine facts shared by the benchmark scripts: CPU time other processes use during a measurement, and the
CPU model (the scripts run as scripts, so this sibling module is importable as ``_neighbours``)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


class Neighbours:
    """CPU time other processes used while a block ran (Linux /proc/stat), as a fraction of one core.

    ``fraction`` is NaN where /proc/stat is missing; it is set when the block ends.
    """

    def __init__(self) -> None:
        self.ok = Path("/proc/stat").exists()
        self.tck = os.sysconf("SC_CLK_TCK") if self.ok else 100
        self.fraction = float("nan")

    def _busy(self) -> int:
        v = list(map(int, Path("/proc/stat").read_text().splitlines()[0].split()[1:9]))
        return sum(v) - v[3] - v[4]

    def __enter__(self) -> Neighbours:
        self.fraction = float("nan")
        if self.ok:
            t = os.times()
            self._b0, self._s0, self._w0 = self._busy(), (t.user + t.system) * self.tck, time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.ok:
            t = os.times()
            other = (self._busy() - self._b0) - ((t.user + t.system) * self.tck - self._s0)
            self.fraction = max(0.0, other / self.tck / max(time.perf_counter() - self._w0, 1e-9))


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
