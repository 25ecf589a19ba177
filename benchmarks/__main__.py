"""``python -m benchmarks``: run the suite, print the table, write docs/benchmarks.md."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
