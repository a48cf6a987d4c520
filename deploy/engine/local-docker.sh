#!/usr/bin/env bash
# Start a throwaway Docker engine on a Debian machine with no registry access (dev and CI machines),
# and make the base image the Bento Dockerfiles start FROM (python:3.11-slim) locally.
# Recipe: ../shared/CONTAINERS.md. Prints `export DOCKER_HOST=...` for the caller to eval.
# Usage: eval "$(deploy/engine/local-docker.sh start)"   |   deploy/engine/local-docker.sh stop
set -euo pipefail
D=${FINBENTO_DOCKER_DIR:-/tmp/finbento-docker}
SOCK=unix://$D/docker.sock
BASE=${FINBENTO_BASE_IMAGE:-python:3.11-slim}

stop() {
  if [ -f "$D/dockerd.pid" ]; then kill "$(cat "$D/dockerd.pid")" 2>/dev/null || true; rm -f "$D/dockerd.pid"; fi
}

start() {
  mkdir -p "$D"
  if ! command -v dockerd >/dev/null || ! [ -x /usr/bin/docker ] || ! command -v debootstrap >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      docker.io containerd runc iptables debootstrap) >&2
  fi
  if ! DOCKER_HOST=$SOCK /usr/bin/docker info >/dev/null 2>&1; then
    dockerd --bridge=none --iptables=false --ip-masq=false --data-root "$D/data" \
      --exec-root "$D/exec" --pidfile "$D/dockerd.pid" -H "$SOCK" > "$D/dockerd.log" 2>&1 &
    for _ in $(seq 60); do DOCKER_HOST=$SOCK /usr/bin/docker info >/dev/null 2>&1 && break; sleep 0.5; done
    DOCKER_HOST=$SOCK /usr/bin/docker info >/dev/null \
      || { echo "dockerd did not start; see $D/dockerd.log" >&2; tail -5 "$D/dockerd.log" >&2; exit 1; }
  fi
  export DOCKER_HOST=$SOCK
  if ! /usr/bin/docker image inspect "$BASE" >/dev/null 2>&1 \
      && ! /usr/bin/docker pull -q "$BASE" >/dev/null 2>&1; then
    echo "building a local stand-in for $BASE (debootstrap, ~2 min)" >&2
    if ! /usr/bin/docker image inspect local/debian:bookworm-slim >/dev/null 2>&1; then
      [ -d "$D/rootfs/usr" ] || debootstrap --variant=minbase bookworm "$D/rootfs" \
        http://deb.debian.org/debian >&2
      tar -C "$D/rootfs" -c . | /usr/bin/docker import - local/debian:bookworm-slim >&2
    fi
    mkdir -p "$D/base"
    # Debian bookworm's python3 is 3.11; the Bento Dockerfile finds it as python3 / python.
    cat > "$D/base/Dockerfile" <<'DOCKERFILE'
FROM local/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
      python-is-python3 ca-certificates curl && rm -rf /var/lib/apt/lists/* \
    && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
DOCKERFILE
    DOCKER_BUILDKIT=0 /usr/bin/docker build -q --network host -t "$BASE" "$D/base" >&2
  fi
  echo "export DOCKER_HOST=$SOCK"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
