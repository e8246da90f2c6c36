"""mlplat: a plugin-based MLOps platform for deep learning on Kubeflow.

This package is imported by the CLI before any command runs, so it stays light:
no torch, no pandas, no serving stack at import time.
"""

__version__ = "0.1.0"
