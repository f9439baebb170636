"""``python -m fastnats``: the same as ``fastnats-exporter``."""

import sys

from .cli import main

sys.exit(main())
