"""Calibration sets, INT8 Q/DQ quantization and the accuracy-drop report (ONNX Runtime on a CPU; no torch)."""

from __future__ import annotations

__all__ = [
    "accuracy_report",
    "load_calibration_set",
    "make_calibration_set",
    "quantize_int8",
    "select_uncertainty",
    "spearman",
]


def __getattr__(name: str):  # lazy: importing hpsedge.calib stays cheap
    if name in ("make_calibration_set", "load_calibration_set", "select_uncertainty"):
        from hpsedge.calib import sets

        return getattr(sets, name)
    if name == "quantize_int8":
        from hpsedge.calib.quantize import quantize_int8

        return quantize_int8
    if name in ("accuracy_report", "spearman"):
        from hpsedge.calib import report

        return getattr(report, name)
    raise AttributeError(name)
