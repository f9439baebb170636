"""Builds the compiled core; all metadata lives in pyproject.toml.

FASTNATS_DEBUG=1 builds it with -O0 -g and writes Cython's annotated HTML beside the .pyx;
FASTNATS_CYTHON_ALWAYS=1 regenerates the C even when Cython thinks it is current.
FASTNATS_SANITIZE=1 builds it with AddressSanitizer and UndefinedBehaviorSanitizer (-O1 -g);
FASTNATS_SANITIZE=fuzzer adds libFuzzer's coverage (-fsanitize=fuzzer-no-link, clang only) so that
atheris sees which branches of the core an input reached. A sanitized core needs the sanitizer
runtime preloaded into Python; docs/robustness.md has the commands.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTNATS_DEBUG") == "1"
SANITIZE = os.environ.get("FASTNATS_SANITIZE", "")
if SANITIZE not in ("", "0", "1", "fuzzer"):
    raise SystemExit(f"FASTNATS_SANITIZE={SANITIZE!r}: use 1 (ASan and UBSan) or fuzzer (and "
                     f"libFuzzer coverage)")


def compile_and_link_args() -> tuple[list[str], list[str]]:
    if SANITIZE in ("", "0"):
        return (["-O0", "-g"] if DEBUG else ["-O3"]), []
    checks = "address,undefined,fuzzer-no-link" if SANITIZE == "fuzzer" else "address,undefined"
    # Report the first undefined behaviour as an error instead of printing it and going on.
    flags = [f"-fsanitize={checks}", "-fno-sanitize-recover=undefined",
             "-fno-omit-frame-pointer", "-g", "-O0" if DEBUG else "-O1"]
    return flags, flags


compile_args, link_args = compile_and_link_args()
extensions = [
    Extension(
        "fastnats._core",
        ["fastnats/_core.pyx"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
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
