# The native audio shim is built by cffi at install time; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["native/build_native.py:ffibuilder"])
