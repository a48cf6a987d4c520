"""Process-level tuning shared by every service worker."""

from __future__ import annotations

import gc


def tune_gc(gen0_threshold: int = 50_000) -> None:
    """Make garbage-collection pauses short and rare in a serving worker.

    After start-up, ``gc.freeze()`` moves every object that exists (modules, the model, BentoML's
    machinery) to a permanent generation that collections skip, so a full collection only walks
    what requests created. A higher generation-0 threshold (default 700 allocations) makes
    collections rarer; request objects are short-lived, so little survives to older generations.
    Measured effect: bench/serving.py (see README, Performance).
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
