"""Selection rules for pseudo-labels: ``"pelvis_sigma<0.3"`` and friends.

A rule is one or more clauses ``<metric> <op> <value>`` joined by ``and`` (or ``&``), or ``all`` (keep
everyone). Operators: ``<``, ``<=``, ``>``, ``>=``. Metrics, per person (σ = POCO's raw per-joint σ; σ̃ = σ
accumulated along the kinematic tree, as the official code does before it selects):

* ``pelvis_sigma``: σ₀, the pelvis / global-orientation σ (accumulation leaves it unchanged). The official
  rule (``get_confident_frames`` in POCO's ``train_utils.py``, ``DATASET.UNCERT_THRESHOLD`` = 0.3) keeps
  people with ``pelvis_sigma < 0.3``.
* ``mean_sigma``: mean of σ̃ over the 24 joints (the PARE demo's global uncertainty, without its 0.4 rule).
* ``max_sigma``: the largest σ̃ (a leaf: the least certain chain).
* ``confidence``: the runtime's per-person confidence (POCO: 1 − the official score; TokenHMR: its token
  confidence); ``score``: 1 − confidence (for POCO exactly the official uncertainty score in [0, 0.99]).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hpsedge.errors import InputError
from hpsedge.runtime.confidence import accumulate_sigma

__all__ = ["METRICS", "Rule", "parse_rule"]

METRICS = ("pelvis_sigma", "mean_sigma", "max_sigma", "score", "confidence")
_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}
_CLAUSE = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Rule:
    clauses: tuple[tuple[str, str, float], ...]  #: (metric, op, value); empty = keep all

    @property
    def text(self) -> str:
        """Canonical spelling (recorded in outputs)."""
        if not self.clauses:
            return "all"
        return " and ".join(f"{m}{op}{v:g}" for m, op, v in self.clauses)

    @property
    def needs_sigma(self) -> bool:
        return any(m in ("pelvis_sigma", "mean_sigma", "max_sigma") for m, _, _ in self.clauses)

    @property
    def first_metric(self) -> str:
        return self.clauses[0][0] if self.clauses else "pelvis_sigma"

    def apply(self, sigma: np.ndarray | None, confidence: np.ndarray | None) -> np.ndarray:
        """Keep mask ``[N]`` for people with raw ``sigma [N, 24]`` and ``confidence [N]`` (either may be None)."""
        n = len(sigma) if sigma is not None else (len(confidence) if confidence is not None else 0)
        keep = np.ones(n, dtype=bool)
        for metric, op, value in self.clauses:
            keep &= _OPS[op](metric_values(metric, sigma, confidence), value)
        return keep


def metric_values(metric: str, sigma: np.ndarray | None, confidence: np.ndarray | None) -> np.ndarray:
    """The per-person values of ``metric`` (see the module docstring)."""
    if metric in ("score", "confidence"):
        if confidence is None:
            raise InputError(f"rule metric '{metric}' needs a model with a confidence (this one has none)")
        c = np.asarray(confidence, dtype=np.float64)
        return c if metric == "confidence" else 1.0 - c
    if sigma is None:
        raise InputError(f"rule metric '{metric}' needs POCO's σ; this model has no uncertainty head",
                         hint="use a poco-* export, or --rule all")
    s = np.asarray(sigma, dtype=np.float64)
    if len(s) == 0:
        return np.zeros(0)
    if metric == "pelvis_sigma":
        return s[:, 0]
    acc = accumulate_sigma(s)
    return acc.mean(axis=1) if metric == "mean_sigma" else acc.max(axis=1)


def parse_rule(text: str | Rule) -> Rule:
    """Parse a rule string (see the module docstring); errors are one-line :class:`InputError`."""
    if isinstance(text, Rule):
        return text
    t = str(text).strip()
    if t.lower() in ("all", "none", ""):
        return Rule(())
    clauses = []
    for part in re.split(r"\s+and\s+|&", t):
        m = _CLAUSE.match(part.lower())
        if m is None:
            raise InputError(f"cannot parse rule clause {part.strip()!r} in {t!r}",
                             hint=f"write e.g. 'pelvis_sigma<0.3'; metrics: {', '.join(METRICS)}; ops: < <= > >=")
        metric, op, value = m.group(1), m.group(2), float(m.group(3))
        if metric not in METRICS:
            raise InputError(f"unknown rule metric '{metric}'", hint=f"metrics: {', '.join(METRICS)}")
        clauses.append((metric, op, value))
    return Rule(tuple(clauses))
