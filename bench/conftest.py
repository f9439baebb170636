"""pytest setup of the benchmark suites: bench/ and tests/ (for connzgen) on the import path.

Run with ``pytest bench --benchmark-only``; bench/ is outside the default testpaths.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
