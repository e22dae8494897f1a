"""Evaluation: ``hpsedge val`` (accuracy on the HPS literature's evaluation files, uncertainty quality) and
``hpsedge bench`` (speed of precisions × backends × batch sizes, stage by stage).

Library first: :func:`hpsedge.eval.val.run_val` and :func:`hpsedge.eval.bench.run_bench`; the CLI commands are
thin wrappers. The metrics (:mod:`hpsedge.eval.metrics`) and the runs use numpy and the runtime only (no torch);
``bench`` imports the export side only when it has to build a missing folder.
"""
