"""Only for the optional C helper; everything else is in pyproject.toml."""
from setuptools import Extension, setup

# optional: without a C compiler the package still installs and cni.netns uses ctypes.
setup(ext_modules=[Extension("cni._setns", ["cni/_setns.c"], optional=True)])
