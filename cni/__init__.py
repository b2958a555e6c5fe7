"""pycni: the standard CNI plugins in Python.

The package is the shared library; `plugins/` holds one thin entrypoint per plugin.
Nothing here may import heavy modules at import time: every plugin call is a new process.
"""
from __future__ import annotations

__version__ = "0.1.0"
