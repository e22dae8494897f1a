"""hpsedge: confidence-aware 3D human pose-and-shape regressors on edge GPUs.

The import is light on purpose: ``import hpsedge`` pulls in nothing but the standard library.
Heavy parts live in sub-packages (``hpsedge.models`` and ``hpsedge.export`` need torch;
``hpsedge.runtime`` needs numpy alone).
"""

__version__ = "0.1.0"
