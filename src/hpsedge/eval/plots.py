"""Small PNG charts drawn with Pillow (already a CLI dependency): line charts, histograms, stacked bars.

Enough for the reports of ``hpsedge val`` and ``hpsedge bench``; not a plotting library.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))  # fmt: skip
W, H = 900, 560
LEFT, RIGHT, TOP, BOTTOM = 80, 220, 50, 60


@dataclass
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    dashed: bool = False
    color: tuple[int, int, int] | None = None


def _font(size: int = 14):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        if v >= lo - 1e-9 * step:
            ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.2g}"


class _Canvas:
    def __init__(
        self, title: str, xlabel: str, ylabel: str, xr: tuple[float, float], yr: tuple[float, float], xticks: bool = True
    ) -> None:
        from PIL import Image, ImageDraw

        self.img = Image.new("RGB", (W, H), "white")
        self.d = ImageDraw.Draw(self.img)
        self.xr, self.yr = xr, yr
        self.f, self.fs = _font(15), _font(12)
        self.d.text((LEFT, 15), title, fill="black", font=self.f)
        x0, y0, x1, y1 = LEFT, TOP, W - RIGHT, H - BOTTOM
        self.box = (x0, y0, x1, y1)
        for t in _nice_ticks(*yr):
            py = self.py(t)
            self.d.line([(x0, py), (x1, py)], fill=(230, 230, 230))
            self.d.text((x0 - 8, py), _fmt(t), fill="black", font=self.fs, anchor="rm")
        for t in _nice_ticks(*xr) if xticks else []:
            px = self.px(t)
            self.d.line([(px, y1), (px, y1 + 4)], fill="black")
            self.d.text((px, y1 + 8), _fmt(t), fill="black", font=self.fs, anchor="mt")
        self.d.rectangle(self.box, outline="black")
        self.d.text(((x0 + x1) / 2, H - 22), xlabel, fill="black", font=self.fs, anchor="mm")
        self.d.text((10, TOP - 20), ylabel, fill="black", font=self.fs)
        self.legend_y = TOP

    def px(self, x: float) -> float:
        x0, _, x1, _ = self.box
        lo, hi = self.xr
        return x0 + (x - lo) / ((hi - lo) or 1.0) * (x1 - x0)

    def py(self, y: float) -> float:
        _, y0, _, y1 = self.box
        lo, hi = self.yr
        return y1 - (y - lo) / ((hi - lo) or 1.0) * (y1 - y0)

    def polyline(self, pts: list[tuple[float, float]], color: tuple[int, int, int], dashed: bool, width: int = 2) -> None:
        if len(pts) < 2:
            return
        if not dashed:
            self.d.line(pts, fill=color, width=width)
            return
        for (ax, ay), (bx, by) in itertools.pairwise(pts):
            length = math.hypot(bx - ax, by - ay)
            steps = max(1, int(length // 6))
            for s in range(0, steps, 2):
                t0, t1 = s / steps, min(1.0, (s + 1) / steps)
                self.d.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                            fill=color, width=width)

    def legend(self, label: str, color: tuple[int, int, int], dashed: bool = False, box: bool = False) -> None:
        x = W - RIGHT + 12
        y = self.legend_y + 8
        if box:
            self.d.rectangle([x, y - 5, x + 22, y + 5], fill=color)
        else:
            self.polyline([(x, y), (x + 22, y)], color, dashed)
        self.d.text((x + 28, y), label[:26], fill="black", font=self.fs, anchor="lm")
        self.legend_y += 20

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.img.save(path, format="PNG")
        return path


def line_chart(path: Path, series: Sequence[Series], title: str, xlabel: str, ylabel: str) -> Path:
    xs = [float(v) for s in series for v in s.x]
    ys = [float(v) for s in series for v in s.y if math.isfinite(float(v))]
    xr = (min(xs, default=0.0), max(xs, default=1.0))
    yr = (min(0.0, min(ys, default=0.0)), max(ys, default=1.0) * 1.05 or 1.0)
    c = _Canvas(title, xlabel, ylabel, xr, yr)
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        c.polyline([(c.px(float(x)), c.py(float(y))) for x, y in zip(s.x, s.y, strict=True)], color, s.dashed)
        c.legend(s.label, color, s.dashed)
    return c.save(path)


def histogram_chart(path: Path, values: dict[str, Sequence[float]], title: str, xlabel: str, bins: int = 30) -> Path:
    """Overlaid step histograms (one outline per series) on shared bins."""
    allv = np.concatenate([np.asarray(v, dtype=np.float64) for v in values.values()] or [np.zeros(1)])
    allv = allv[np.isfinite(allv)]
    lo, hi = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    counts = {k: np.histogram(np.asarray(v, dtype=np.float64), bins=edges)[0] for k, v in values.items()}
    top = max((int(c.max()) for c in counts.values() if c.size), default=1) or 1
    c = _Canvas(title, xlabel, "samples", (lo, hi), (0.0, top * 1.08))
    for i, (label, cnt) in enumerate(counts.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = [(c.px(edges[0]), c.py(0))]
        for j, n in enumerate(cnt):
            pts += [(c.px(edges[j]), c.py(n)), (c.px(edges[j + 1]), c.py(n))]
        pts.append((c.px(edges[-1]), c.py(0)))
        c.polyline(pts, color, dashed=False, width=2)
        c.legend(label, color)
    return c.save(path)


def stacked_bar_chart(
    path: Path,
    bars: Sequence[tuple[str, dict[str, float], float]],
    stage_names: Sequence[str],
    title: str,
    ylabel: str,
) -> Path:
    """One bar per entry (label, {stage: value}, total): stages stacked, the total drawn as a black tick."""
    top = max([t for _, _, t in bars] + [sum(s.values()) for _, s, _ in bars] + [1e-9])
    c = _Canvas(title, "", ylabel, (0.0, 1.0), (0.0, top * 1.08), xticks=False)
    x0, _, x1, y1 = c.box
    n = max(1, len(bars))
    slot = (x1 - x0) / n
    width = max(4.0, slot * 0.6)
    for i, (label, stages, total) in enumerate(bars):
        cx = x0 + slot * (i + 0.5)
        base = 0.0
        for k, name in enumerate(stage_names):
            v = float(stages.get(name) or 0.0)
            if v <= 0:
                continue
            c.d.rectangle([cx - width / 2, c.py(base + v), cx + width / 2, c.py(base)], fill=PALETTE[k % len(PALETTE)])
            base += v
        c.d.line([(cx - width / 2 - 3, c.py(total)), (cx + width / 2 + 3, c.py(total))], fill="black", width=2)
        c.d.text((cx, y1 + 8 + (14 if i % 2 else 0)), label[:18], fill="black", font=c.fs, anchor="mt")
    for k, name in enumerate(stage_names):
        c.legend(name, PALETTE[k % len(PALETTE)], box=True)
    c.legend("total", (0, 0, 0))
    return c.save(path)
