"""Bundles and versioned Bento builds.

A bundle is a build file and the models it packages. ``build`` pins each model's BentoML tag with
``--arg`` (see services/args.py) and derives the Bento version from what is inside:
``cr3-<digest>`` names the MLflow version of each model (``cr`` = credit-risk) and the digest
covers the model tags and the packaged source, so a retrain or a code change gives a new version
and rebuilding the same thing is a no-op.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from finbento.settings import PROJECT_ROOT


@dataclass(frozen=True)
class Bundle:
    """A deployable group of services.

    Attributes:
        bentofile: build file, relative to the project root.
        bento_name: name of the Bento it builds.
        models: model names it packages.

    """

    bentofile: str
    bento_name: str
    models: tuple[str, ...]


BUNDLES: dict[str, Bundle] = {
    "all": Bundle("bentofile.yaml", "finbento",
                  ("credit-risk", "fraud", "anomaly", "intent", "ner", "categorizer", "spending",
                   "advisor", "recommender")),
    "risk": Bundle("bentos/risk.yaml", "finbento-risk", ("credit-risk", "fraud", "anomaly")),
    "language": Bundle("bentos/language.yaml", "finbento-language",
                       ("intent", "ner", "categorizer")),
    "forecast": Bundle("bentos/forecast.yaml", "finbento-forecast", ("spending",)),
    "advisor": Bundle("bentos/advisor.yaml", "finbento-advisor", ("advisor",)),
    "recommend": Bundle("bentos/recommend.yaml", "finbento-recommend", ("recommender",)),
}  # fmt: skip
#: Build argument (services/args.py) and short name of each model.
MODEL_ARGS: dict[str, str] = {
    "credit-risk": "credit_risk_model",
    "fraud": "fraud_model",
    "anomaly": "anomaly_model",
    "intent": "intent_model",
    "ner": "ner_model",
    "categorizer": "categorizer_model",
    "spending": "spending_model",
    "advisor": "advisor_model",
    "recommender": "recommender_model",
}
SHORT_NAMES: dict[str, str] = {
    "credit-risk": "cr", "fraud": "fr", "anomaly": "an", "intent": "in", "ner": "ne",
    "categorizer": "ca", "spending": "sp", "advisor": "ad", "recommender": "re",
}  # fmt: skip
#: Models whose challenger can be packaged beside the champion to score in shadow.
CHALLENGER_ARGS: dict[str, str] = {"fraud": "fraud_challenger_model"}
SOURCE_DIRS = ("finbento", "services", "monitoring")
#: Packaged files outside SOURCE_DIRS, and the build files themselves (glob patterns).
SOURCE_FILES = ("bentofile.yaml", "bentos/*.yaml", "scheduler/__init__.py", "scheduler/config.py",
                "trainers/__init__.py")  # fmt: skip


def source_digest(root: Path = PROJECT_ROOT) -> str:
    """sha256 over the packaged source files and the build files (paths and contents), hex."""
    h = hashlib.sha256()
    paths = [p for d in SOURCE_DIRS for p in sorted((root / d).rglob("*.py"))]
    paths += [p for pattern in SOURCE_FILES for p in sorted(root.glob(pattern))]
    for path in paths:
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def bento_version(model_tags: dict[str, str], model_versions: dict[str, str]) -> str:
    """Bento version derived from its models and source.

    Args:
        model_tags: model name -> BentoML tag (``credit-risk:v3-1a2b3c4d``).
        model_versions: model name -> MLflow registered version (``3``).

    Returns:
        e.g. ``cr3-5f0c2a9e1b7d`` (valid BentoML version: lowercase, digits, ``-``).

    """
    readable = "-".join(
        f"{SHORT_NAMES[m]}{model_versions[m]}" for m in sorted(model_tags) if m in SHORT_NAMES
    )  # other tags (e.g. "fraud-challenger") count in the digest only
    h = hashlib.sha256(source_digest().encode())
    for m in sorted(model_tags):
        h.update(model_tags[m].encode())
    return f"{readable}-{h.hexdigest()[:12]}"


def build(
    bundle: str,
    model_tags: dict[str, str],
    model_versions: dict[str, str],
    challengers: dict[str, tuple[str, str]] | None = None,
) -> str:
    """Build ``bundle`` with the given BentoML models (no-op if that exact Bento exists).

    Args:
        bundle: a key of :data:`BUNDLES`.
        model_tags: model name -> BentoML tag, for every model of the bundle.
        model_versions: model name -> MLflow registered version.
        challengers: model -> (BentoML tag, MLflow version) of a challenger packaged to score in
            shadow (models of :data:`CHALLENGER_ARGS` in the bundle only); the version then
            reads e.g. ``fr3c4-...`` and the Bento is labelled ``fraud.challenger=4``.

    Returns:
        the Bento tag, e.g. ``finbento:cr3-5f0c2a9e1b7d``.

    Every model packaged (challengers included) is first checked against the file digests
    recorded at import (finbento/model_integrity.py), even when the Bento exists already: a
    model changed in the store, or imported without digests, is refused.

    Raises:
        KeyError: unknown bundle or a model of the bundle missing from ``model_tags``.
        finbento.model_integrity.ModelIntegrityError: a model's files differ from their
            digests, or it has none (the error names the model, the file and both digests).
        subprocess.CalledProcessError: if ``bentoml build`` fails.

    """
    import bentoml
    from bentoml.exceptions import NotFound

    from finbento.model_integrity import verify_models

    spec = BUNDLES[bundle]
    tags = {m: model_tags[m] for m in spec.models}
    shadow = {m: c for m, c in (challengers or {}).items() if m in tags and m in CHALLENGER_ARGS}
    verify_models([*tags.values(), *(t for t, _ in shadow.values())])
    versions = {m: model_versions[m] + (f"c{shadow[m][1]}" if m in shadow else "") for m in tags}
    version = bento_version({**tags, **{f"{m}-challenger": t for m, (t, _) in shadow.items()}},
                            versions)  # fmt: skip
    tag = f"{spec.bento_name}:{version}"
    try:
        bentoml.get(tag)
        return tag
    except NotFound:
        pass
    cmd = [
        str(Path(sys.executable).parent / "bentoml"),
        "build",
        "-f",
        str(PROJECT_ROOT / spec.bentofile),
        "--version",
        version,
        "-o",
        "tag",
    ]
    for m, model_tag in tags.items():
        cmd += ["--arg", f"{MODEL_ARGS[m]}={model_tag}"]
        cmd += ["--label", f"{m}={model_versions[m]}", "--label", f"{m}.bento_model={model_tag}"]
    for m, (challenger_tag, challenger_version) in shadow.items():
        cmd += ["--arg", f"{CHALLENGER_ARGS[m]}={challenger_tag}"]
        cmd += ["--label", f"{m}.challenger={challenger_version}"]
    cmd.append(str(PROJECT_ROOT))
    subprocess.run(cmd, check=True, cwd=PROJECT_ROOT, capture_output=True, text=True)
    return tag


def latest_bento(bundle: str) -> str | None:
    """Tag of the most recently built Bento of ``bundle``, or None."""
    import bentoml

    bentos = [b for b in bentoml.list() if b.tag.name == BUNDLES[bundle].bento_name]
    if not bentos:
        return None
    return str(max(bentos, key=lambda b: b.info.creation_time).tag)
