"""Model integrity: a sha256 digest of every model file, checked at build and at serving start.

At import (``trainers/bento_import.py``) the digest of every file the exporter wrote is kept in
the BentoML model's metadata under :data:`METADATA_KEY` (``files_sha256``: relative POSIX path ->
hex sha256). ``finbento.bentos.build`` calls :func:`verify_models` before ``bentoml build``, so a
model file changed, added or removed in the store after import is never packaged into a Bento;
every service that loads a model calls :func:`verified_path` first, so a model changed inside a
built Bento (or its image) after the build stops the worker from starting instead of being
served. BentoML's own ``model.yaml`` is not covered: it holds the digests themselves.

A model imported before digests were recorded has no manifest and is **refused** too (the safe
choice: nothing says its files are the ones the registry exported). Delete it from the store
(``bentoml models delete <tag>``) and import the champion again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Metadata key of the manifest in a BentoML model's ``model.yaml``.
METADATA_KEY = "files_sha256"
#: Files of a BentoML model folder that the manifest leaves out (BentoML's own record).
EXCLUDED = frozenset({"model.yaml"})
_CHUNK = 1 << 20


class ModelIntegrityError(Exception):
    """A model's files differ from the digests recorded at import, or it has no digests.

    Attributes:
        tag: the BentoML model tag.
        file: the relative path of the first file that differs (None: no manifest at all).
        expected: its recorded sha256 (None: the file is not in the manifest).
        actual: its sha256 now (None: the file is missing).
    """

    def __init__(
        self, tag: str, file: str | None, expected: str | None, actual: str | None, why: str
    ) -> None:
        super().__init__(why)
        self.tag, self.file, self.expected, self.actual = tag, file, expected, actual


def file_sha256(path: Path) -> str:
    """The sha256 of one file's bytes, hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_files(folder: Path) -> dict[str, str]:
    """The manifest of a model folder: every file (recursively) but :data:`EXCLUDED`.

    Args:
        folder: the model's folder.

    Returns:
        relative POSIX path -> hex sha256, sorted by path.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        rel: file_sha256(p)
        for p in files
        if (rel := p.relative_to(folder).as_posix()) not in EXCLUDED
    }


def verify_folder(tag: str, folder: Path, manifest: Mapping[str, str] | None) -> None:
    """Check a model folder against its manifest: same files, same bytes.

    Args:
        tag: the model's tag, for the error message.
        folder: the model's folder.
        manifest: relative path -> sha256 as recorded at import; None if none was recorded.

    Raises:
        ModelIntegrityError: no manifest, a file missing, an unexpected file, or a digest that
            differs (the first such file, in path order, is named).
    """
    if not manifest:
        raise ModelIntegrityError(
            tag, None, None, None,
            f"model {tag} has no file digests ({METADATA_KEY}): it was imported before they "
            f"were recorded; delete it (bentoml models delete {tag}) and import it again",
        )  # fmt: skip
    actual = digest_files(folder)
    for name in sorted(set(manifest) | set(actual)):
        want, got = manifest.get(name), actual.get(name)
        if want == got:
            continue
        if got is None:
            why = f"model {tag}: file {name} is missing (expected sha256 {want})"
        elif want is None:
            why = f"model {tag}: unexpected file {name} (sha256 {got}), not in its digests"
        else:
            why = f"model {tag}: file {name} has sha256 {got}, expected {want}"
        raise ModelIntegrityError(tag, name, want, got, why + "; refusing to use it")


def verify_model(model: Any) -> None:
    """Check one BentoML model (``bentoml.Model``) against the manifest in its metadata.

    Raises:
        ModelIntegrityError: as :func:`verify_folder`.
    """
    manifest = model.info.metadata.get(METADATA_KEY)
    verify_folder(str(model.tag), Path(model.path), manifest)


def verify_models(tags: Iterable[str]) -> None:
    """Check every model of ``tags`` in the local BentoML store.

    Args:
        tags: BentoML model tags, e.g. ``credit-risk:v3-1a2b3c4d``.

    Raises:
        ModelIntegrityError: the first model whose files differ from their digests.
        bentoml.exceptions.NotFound: a tag is not in the store.
    """
    import bentoml

    for tag in tags:
        verify_model(bentoml.models.get(tag))


def verified_path(ref: Any) -> Path:
    """The folder of a model a service is about to load, once its files match their digests.

    Every model service calls it in ``__init__`` (a test checks they all do): a worker whose
    model was altered after import refuses to start, and BentoML reports the error, rather than
    serving it. Hashing costs about 1 s per GB of model files, once per worker start.

    Args:
        ref: a ``bentoml.models.BentoModel`` (a service's model reference) or a stored
            ``bentoml.Model``.

    Returns:
        the model's folder in the store (in a served Bento: the Bento's own model store).

    Raises:
        ModelIntegrityError: as :func:`verify_folder`.
        bentoml.exceptions.NotFound: the model is not in the store.
    """
    import bentoml

    model = bentoml.models.get(ref.tag) if hasattr(ref, "stored") else ref
    verify_model(model)
    return Path(model.path)
