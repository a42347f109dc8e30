# The native modules are built by cffi at install time: the audio shim
# (edge.capture._native) and openat2 for the file tools (edge.tools._beneath).
# Everything else is in pyproject.toml.
from setuptools import setup

setup(
    cffi_modules=[
        "native/build_native.py:ffibuilder",
        "native/build_beneath.py:ffibuilder",
    ]
)
