"""Puts the checkout's tests.support within reach of the benchmarks, behind the installed fastnats.

The checkout is appended to sys.path, after site-packages, so ``import fastnats`` finds the
installed package (built extension included) and only ``tests``, which no one installs, comes
from here. A benchmark script that needs tests.support imports this module before it, and
bench/conftest.py does so for the pytest suites.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
