"""Builds the compiled core; all metadata lives in pyproject.toml.

FASTNATS_DEBUG=1 builds it with -O0 -g and writes Cython's annotated HTML beside the .pyx;
FASTNATS_CYTHON_ALWAYS=1 regenerates the C even when Cython thinks it is current.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTNATS_DEBUG") == "1"

extensions = [
    Extension(
        "fastnats._core",
        ["fastnats/_core.pyx"],
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3, "embedsignature": True},
        annotate=DEBUG,
        force=os.environ.get("FASTNATS_CYTHON_ALWAYS") == "1",
    )
)
