"""Container images of the Bentos: ``bentoml containerize`` with finbento's tags and options.

:func:`containerize` builds one OCI image of a built Bento with BentoML's own Dockerfile and
builders (docker, podman, buildah, ...), tagged ``[REGISTRY/]<bento name>:<bento version>`` (and
``:latest``), labelled with the bundle and its model versions. Two additions to BentoML's
Dockerfile, both opt-in:

- an extra CA bundle (``ca_bundle``): PEM certificates added to the image's trust store before any
  package is installed, for builds behind a TLS-inspecting proxy (``SSL_CERT_FILE``,
  ``PIP_CERT`` and ``REQUESTS_CA_BUNDLE`` point at the merged bundle, at build and run time);
- slim (default): BentoML's Debian recipe installs ``build-essential`` and ``git`` (about 630 MB)
  for packages that compile at install time; every package of finbento's Bentos installs from a
  wheel, so they are left out (a package that needs compiling then fails the build, loudly);
- no BuildKit by default: the Dockerfile then has no ``# syntax=`` line, which would make
  BuildKit fetch a frontend image from a registry (see ../shared/CONTAINERS.md).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

BACKENDS = ("docker", "podman", "buildah", "nerdctl", "buildctl", "buildx")
CA_FILE = "env/docker/finbento-extra-ca.crt"
CA_BUNDLE = "/etc/ssl/certs/finbento-ca-bundle.pem"


@dataclass(frozen=True)
class Image:
    """An image built from a Bento.

    Attributes:
        bento: the Bento tag (``name:version``).
        tags: image references, the versioned one first.
        labels: OCI labels put on the image.
    """

    bento: str
    tags: list[str]
    labels: dict[str, str] = field(default_factory=dict)


def image_tags(bento_tag: str, registry: str | None = None, latest: bool = True) -> list[str]:
    """``[registry/]name:version`` (and ``:latest``) of a Bento tag ``name:version``.

    Raises:
        ValueError: if ``bento_tag`` has no version.
    """
    name, _, version = bento_tag.partition(":")
    if not version:
        raise ValueError(f"Bento tag {bento_tag!r} has no version (expected name:version)")
    repo = f"{registry.rstrip('/')}/{name}" if registry else name
    return [f"{repo}:{version}"] + ([f"{repo}:latest"] if latest else [])


BUILD_TOOLS = ("build-essential", "git")


def slim(dockerfile: str) -> str:
    """Drop the compilers (:data:`BUILD_TOOLS`) from the Dockerfile's ``apt-get install`` lines."""
    out = []
    for line in dockerfile.splitlines():
        if "apt-get install" in line:
            line = " ".join(w for w in line.split(" ") if w not in BUILD_TOOLS)
        out.append(line)
    return "\n".join(out) + "\n"


def add_ca_bundle(dockerfile: str, ca_file: str = CA_FILE, bundle: str = CA_BUNDLE) -> str:
    """Insert the extra-CA steps right after the first ``FROM`` of a Dockerfile.

    The extra certificates (copied from ``ca_file`` in the build context) are appended to the
    base image's system bundle (Debian's ``/etc/ssl/certs/ca-certificates.crt`` when it exists)
    into ``bundle``; pip, requests and OpenSSL read it through environment variables.

    Raises:
        ValueError: if the Dockerfile has no ``FROM`` line.
    """
    lines = dockerfile.splitlines()
    at = next((i for i, line in enumerate(lines) if line.upper().startswith("FROM ")), None)
    if at is None:
        raise ValueError("Dockerfile has no FROM line")
    steps = [
        f"COPY {ca_file} /usr/local/share/ca-certificates/finbento-extra-ca.crt",
        "RUN (cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null || true; "
        f"cat /usr/local/share/ca-certificates/finbento-extra-ca.crt) > {bundle}",
        f"ENV SSL_CERT_FILE={bundle} PIP_CERT={bundle} REQUESTS_CA_BUNDLE={bundle} "
        "UV_NATIVE_TLS=true",
    ]
    return "\n".join([*lines[: at + 1], *steps, *lines[at + 1 :]]) + "\n"


def containerize(
    bento_tag: str,
    *,
    backend: str = "docker",
    registry: str | None = None,
    latest: bool = True,
    ca_bundle: Path | None = None,
    network: str | None = "host",
    buildkit: bool = False,
    keep_build_tools: bool = False,
    options: dict[str, str] | None = None,
) -> Image:
    """Build the image of a Bento from the BentoML store.

    Args:
        bento_tag: Bento tag ``name:version`` (e.g. ``finbento-risk:an1-cr1-fr1-1a2b...``).
        backend: BentoML builder: docker, podman, buildah, nerdctl, buildctl or buildx.
        registry: prefix of the image names (``ghcr.io/acme``); None: local names only.
        latest: also tag ``:latest``.
        ca_bundle: PEM file of extra CA certificates trusted at build and run time.
        network: network mode of the build's RUN steps (``host`` on machines without a bridge;
            None: the engine's default).
        buildkit: let BentoML write BuildKit syntax (cache mounts); needs a builder that can
            fetch the Dockerfile frontend image.
        keep_build_tools: keep BentoML's ``build-essential`` and ``git`` (see :func:`slim`).
        options: extra builder options, ``--opt KEY=VALUE`` of ``bentoml containerize``
            (e.g. ``{"isolation": "chroot"}`` for buildah).

    Returns:
        the built :class:`Image`.

    Raises:
        ValueError: unknown backend, missing CA file or a Bento tag without version.
        RuntimeError: the builder is not usable here or the build failed (its log is printed).
    """
    import bentoml
    from bentoml._internal.container import construct_containerfile
    from bentoml.container import get_backend, health

    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if ca_bundle is not None and not Path(ca_bundle).is_file():
        raise ValueError(f"CA bundle {ca_bundle} is not a file")
    bento = bentoml.get(bento_tag)
    tag = str(bento.tag)
    tags = image_tags(tag, registry, latest)
    labels = {
        "org.opencontainers.image.title": bento.tag.name,
        "org.opencontainers.image.version": bento.tag.version or "",
        "ai.finbento.bento": tag,
        **{f"ai.finbento.{k}": str(v) for k, v in bento.info.labels.items()},
    }
    if not health(backend):
        raise RuntimeError(
            f"container backend {backend!r} is not available here (see ../shared/CONTAINERS.md; "
            "deploy/engine/local-docker.sh starts a local Docker engine)"
        )
    if backend == "docker" and not buildkit:
        os.environ["DOCKER_BUILDKIT"] = "0"
    builder = get_backend(backend)
    with construct_containerfile(bento, enable_buildkit=buildkit) as (context, dockerfile):
        text = Path(dockerfile).read_text()
        if not keep_build_tools:
            text = slim(text)
        if ca_bundle is not None:
            shutil.copyfile(ca_bundle, Path(context, CA_FILE))
            text = add_ca_bundle(text)
        Path(dockerfile).write_text(text)
        attrs: dict[str, object] = {"file": dockerfile, "context_path": context,
                                    "tag": tuple(tags), "label": labels}  # fmt: skip
        attrs.update(options or {})
        if network:
            attrs["network"] = network
        try:
            builder.build(**attrs)
        except Exception as exc:  # BentoMLException carries the builder's stderr
            raise RuntimeError(f"{backend} build of {tag} failed: {exc}") from exc
    return Image(bento=tag, tags=tags, labels=labels)
