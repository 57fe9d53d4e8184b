"""Builds the optional C encoder in place (`make install` runs `setup.py build_ext --inplace`).

Without it the engine runs the same encoder in pure Python (stepping_django/engine/serialize.py).
"""

from setuptools import Extension, setup

setup(
    packages=[],  # nothing is installed: the app runs from the repository
    ext_modules=[
        Extension("stepping_django.engine._speedups", ["stepping_django/engine/_speedups.c"])
    ],
)
