"""Metric names the project defines and the ``ml_*`` names a PromQL expression uses.

Shared by the Prometheus-rule and Grafana-dashboard tests. The definitions are read from the
imported metric modules (each module-level metric's name), exposed as ``prometheus_client`` does:
a Counter as ``<name>_total`` (a trailing ``_total`` in the given name is dropped first) and
``<name>_created``, a Histogram as ``_bucket``/``_sum``/``_count``/``_created``, a Summary as
itself, ``_sum``/``_count``/``_created``, a Gauge as itself.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRIC_MODULES = (ROOT / "monitoring" / "metrics.py", ROOT / "scheduler" / "metrics.py")
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool is not on PATH (apt-get install --no-install-recommends prometheus)"

SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_ML_NAME = re.compile(r"(?<![\w:])ml_\w*")


def defined_metrics(paths: tuple[Path, ...] = METRIC_MODULES) -> dict[str, str]:
    """Base metric name -> kind (``Counter``, ``Gauge``, ...) of each metric in ``paths``.

    The modules are imported and their module-level ``prometheus_client`` metrics read, so a
    metric made through a helper function counts as well.
    """
    from prometheus_client.metrics import MetricWrapperBase

    found: dict[str, str] = {}
    for path in paths:
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                found[value._name] = type(value).__name__
    return found


def exposed_metrics(paths: tuple[Path, ...] = METRIC_MODULES) -> set[str]:
    """Every series name the metrics of ``paths`` are exposed under."""
    return {
        base + suffix for base, kind in defined_metrics(paths).items() for suffix in SUFFIXES[kind]
    }


def ml_metrics_in(expr: str) -> set[str]:
    """``ml_*`` metric names in a PromQL expression (quoted strings, e.g. label values, ignored)."""
    return set(_ML_NAME.findall(_STRING.sub('""', expr)))


def run_promtool(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``promtool`` with ``args`` in ``cwd``; stdout and stderr together in ``.stdout``."""
    assert PROMTOOL, NO_PROMTOOL
    return subprocess.run(
        [PROMTOOL, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
