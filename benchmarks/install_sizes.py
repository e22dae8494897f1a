#!/usr/bin/env python3
"""Installed size of each pip extra of hpsedge, measured from an environment's package metadata.

For every extra (and the base install) the script resolves the transitive requirements among the
distributions installed in the running environment and sums the sizes of their files on disk (the
``RECORD`` of each distribution; bytecode caches excluded). Run it with the interpreter of an
environment that holds the extras you want measured; extras whose requirements are not installed there
are reported as missing, never guessed::

    python benchmarks/install_sizes.py                  # writes benchmarks/results/install_sizes.{json,md}
    python benchmarks/install_sizes.py --extras trt --json /tmp/trt.json   # e.g. from a venv with cuda-python

Sizes are of what pip installed here (this machine: Linux x86-64, Python 3.11, CPU torch from the
Makefile's pin); wheels differ by platform, so treat them as orders of magnitude elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_extras() -> tuple[list[str], dict[str, list[str]]]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"], project["optional-dependencies"]


def _req_name_extras(req: str) -> tuple[str, list[str], str]:
    m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?\s*([^;]*)(;.*)?$", req)
    if not m:
        raise ValueError(req)
    marker = (m.group(4) or "").lstrip(";").strip()
    return _norm(m.group(1)), [e.strip() for e in (m.group(2) or "").split(",") if e.strip()], marker


def _marker_ok(marker: str, extras: set[str]) -> bool:
    if not marker:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # without packaging: keep requirements that are not extra-gated
        return "extra" not in marker
    env = {"extra": ""}
    if "extra" in marker:
        return any(Marker(marker).evaluate({**env, "extra": e}) for e in extras)
    return Marker(marker).evaluate()


def dist_size(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        if "__pycache__" in f.parts or str(f).endswith(".pyc"):
            continue
        with contextlib.suppress(OSError):
            total += Path(dist.locate_file(f)).stat().st_size
    return total


def closure(reqs: list[str], installed: dict[str, metadata.Distribution]) -> tuple[set[str], set[str]]:
    """Installed distributions reached from ``reqs`` (extras followed), and requirements not installed."""
    seen: set[str] = set()
    missing: set[str] = set()
    todo = [(r, set()) for r in reqs]
    while todo:
        req, parent_extras = todo.pop()
        name, extras, marker = _req_name_extras(req)
        if marker and not _marker_ok(marker, parent_extras):
            continue
        if name == "hpsedge":  # a self-reference such as hpsedge[ort,cli]
            _, opt = _pyproject_extras()
            for e in extras:
                todo += [(r, set()) for r in opt.get(e, [])]
            continue
        dist = installed.get(name)
        if dist is None:
            missing.add(name)
            continue
        if name in seen and not extras:
            continue
        seen.add(name)
        for sub in dist.requires or []:
            todo.append((sub, set(extras)))
    return seen, missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--extras", nargs="*", default=None, help="extras to measure (default: all, plus the base)")
    p.add_argument("--json", type=Path, default=RESULTS / "install_sizes.json")
    args = p.parse_args(argv)
    base, opt = _pyproject_extras()
    installed = {_norm(d.metadata["Name"]): d for d in metadata.distributions()}
    wanted = args.extras if args.extras is not None else ["(base)", *opt]
    rows = {}
    for extra in wanted:
        reqs = list(base) + ([] if extra == "(base)" else [f"hpsedge[{extra}]"])
        dists, missing = closure(reqs, installed)
        sizes = {d: dist_size(installed[d]) for d in sorted(dists)}
        rows[extra] = {"mb": round(sum(sizes.values()) / 1e6, 1), "missing": sorted(missing),
                       "largest": {d: round(s / 1e6, 1) for d, s in sorted(sizes.items(), key=lambda kv: -kv[1])[:5]}}
        note = f" (NOT INSTALLED here: {', '.join(sorted(missing))})" if missing else ""
        print(f"{extra:>10}: {rows[extra]['mb']:8.1f} MB{note}  largest: "
              + ", ".join(f"{d} {s} MB" for d, s in rows[extra]["largest"].items()))
    doc = {"python": sys.version.split()[0], "platform": sys.platform, "extras": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    md = ["# Installed size per extra (benchmarks/install_sizes.py)", "",
          f"Python {doc['python']} on {doc['platform']}; sizes of the installed files (no bytecode).", "",
          "| extra | MB | largest packages | not installed here |", "|---|---:|---|---|"]
    for extra, r in rows.items():
        md.append(f"| {extra} | {r['mb']} | " + ", ".join(f"{d} {s}" for d, s in r["largest"].items())
                  + f" | {', '.join(r['missing']) or '-'} |")
    args.json.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print(f"wrote {args.json} and {args.json.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
