"""Pseudo-label curation (``hpsedge curate``): run an export over many images, keep the confident people.

    from hpsedge.curate import curate
    summary = curate("build/poco-cliff", "images/", "boxes.json", "curated/", rule="pelvis_sigma<0.3")

Not part of the thin runtime (it uses it). Ray Data is optional (``ray="local"`` or a ``ray://`` address).
See :mod:`hpsedge.curate.core` for the job and the output layout, :mod:`hpsedge.curate.rules` for rules.
"""

from __future__ import annotations

from hpsedge.curate.core import OUTPUT_NAME, curate, merge_shards, plan_items, process_items
from hpsedge.curate.rules import METRICS, Rule, parse_rule

__all__ = ["METRICS", "OUTPUT_NAME", "Rule", "curate", "merge_shards", "parse_rule", "plan_items", "process_items"]
