"""The garbage-collector policy: a high young-generation threshold while the CLI starts (set by
``entry.main``), and ``steady_gc()`` for long-running commands (applied by the command registry).

A module of its own, importing nothing from the package, so the registry can apply it without
importing ``entry`` (which imports ``app``, which imports the registry: a cycle).
"""

from __future__ import annotations

import gc

STARTUP_GC_THRESHOLD = 50_000  # young-generation allocations between collections (default 700)
_DEFAULT_GC_THRESHOLDS = gc.get_threshold()  # read before entry.main raises the threshold


def steady_gc() -> None:
    """Before a long run: default GC thresholds, and the start-up heap never scanned again."""
    gc.freeze()
    gc.set_threshold(*_DEFAULT_GC_THRESHOLDS)
