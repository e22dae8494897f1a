"""Regression heads (HMR, CLIFF, PARE) and POCO's uncertainty head, with the official module names."""

from hpsedge.models.heads.hmr import CliffHead, HMRHead
from hpsedge.models.heads.pare import PareHead
from hpsedge.models.heads.poco import PocoUncertaintyHead

__all__ = ["CliffHead", "HMRHead", "PareHead", "PocoUncertaintyHead"]
