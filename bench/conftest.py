"""pytest setup of the benchmark suites: tests.support within reach (see bench/checkout.py).

Run with ``pytest bench --benchmark-only``; bench/ is outside the default testpaths.
"""

import checkout  # noqa: F401
