#!/usr/bin/env bash
# The CPU image, built with buildah (no Docker daemon needed): `make container` runs this.
#
#   1. buildah present?                       else: stop, say how to install it
#   2. bentoml build (bentofile.yaml)         the bento, from the model store in $BENTOML_HOME
#   3. the bento's base image (python:3.11-slim): already local, or pulled from the registry; where no
#      registry answers and CONTAINER_BASE=local (or auto, the default) with mmdebstrap and root, a
#      Debian bookworm base built here (FINDINGS "Containers") -- for trying the image on this machine
#      only: it holds this machine's CA certificates and is tagged `-localbase`. Never push it.
#   4. bentoml containerize --backend buildah (chroot isolation, host network)
#
# Each stage prints "container: step N/4 ..."; a stop names the step and the command that would finish it.
# Storage: vfs under var/containers unless CONTAINERS_STORAGE_CONF is set (what worked on the build machine,
# FINDINGS "Containers"; buildah ignored STORAGE_DRIVER there). `make clean` removes it with var/.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
VAR=${VAR:-var}
CONTAINER_BASE=${CONTAINER_BASE:-auto}  # auto | registry | local
LOCAL_BASE=localhost/lookalike-base:bookworm-local
PULL_TIMEOUT=${PULL_TIMEOUT:-60}

say() { echo "container: $*"; }
stop() { say "STOPPED at $1"; shift; for line in "$@"; do echo "  $line"; done; exit 1; }

say "step 1/4 buildah"
if ! command -v buildah >/dev/null; then
  stop "step 1/4: buildah missing" \
    "install it (Debian: apt-get install -y buildah), or on a machine with Docker run:" \
    "$BIN/bentoml build && $BIN/bentoml containerize lookalike:latest"
fi
if [ -z "${CONTAINERS_STORAGE_CONF:-}" ]; then
  mkdir -p "$VAR/containers"
  export CONTAINERS_STORAGE_CONF=$PWD/$VAR/containers/storage.conf
  printf '[storage]\ndriver = "vfs"\nrunroot = "%s"\ngraphroot = "%s"\n' \
    "$PWD/$VAR/containers/run" "$PWD/$VAR/containers/storage" > "$CONTAINERS_STORAGE_CONF"
fi
export BUILDAH_ISOLATION=chroot
say "  $(buildah --version); storage $CONTAINERS_STORAGE_CONF"

say "step 2/4 bentoml build (bentofile.yaml, models from ${BENTOML_HOME:-~/bentoml})"
tag=$("$BIN/bentoml" build -o tag | tail -n 1 | sed 's/^__tag__://')
bento=$("$BIN/bentoml" get "$tag" -o path)
from=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' "$bento/env/docker/Dockerfile" | head -n 1)
say "  bento $tag at $bento; its base image: $from"

say "step 3/4 base image $from"
image=lookalike:${tag#*:}
base_opt=()
if buildah inspect --type image "$from" >/dev/null 2>&1; then
  say "  found locally"
elif [ "$CONTAINER_BASE" != local ] && timeout "$PULL_TIMEOUT" buildah pull -q "docker.io/library/$from" >/dev/null 2>&1; then
  say "  pulled docker.io/library/$from"
elif [ "$CONTAINER_BASE" = registry ]; then
  stop "step 3/4: no registry: base image needed (pulling docker.io/library/$from failed or took over ${PULL_TIMEOUT} s)" \
    "where a registry answers:  make container" \
    "or build it here, for local use only:  CONTAINER_BASE=local make container"
else
  say "  no registry answered: using a locally built base ($LOCAL_BASE), for this machine only"
  if ! buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
    if ! command -v mmdebstrap >/dev/null || [ "$(id -u)" != 0 ]; then
      stop "step 3/4: no registry: base image needed, and no mmdebstrap (or not root) to build one" \
        "apt-get install -y mmdebstrap, then: CONTAINER_BASE=local make container" \
        "or where a registry answers:  make container"
    fi
    rootfs=$VAR/containers/bookworm.tar
    say "  mmdebstrap bookworm -> $rootfs"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
      bookworm "$rootfs"
    ctr=$(buildah from scratch)
    buildah add -q "$ctr" "$rootfs" / >/dev/null
    # What python:3.11-slim offers the bento's Dockerfile: `pip` that may install into the system Python (it
    # installs uv, which then makes the bento's own venv). This machine's CA bundle lets pip/uv reach the
    # registry through its proxy: the reason this base must never leave the machine.
    buildah copy -q "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
    buildah run "$ctr" -- rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED
    buildah config --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --env UV_NATIVE_TLS=1 \
      --label org.opencontainers.image.description="local test base: holds a build machine's CA certificates" "$ctr"
    buildah commit -q "$ctr" "$LOCAL_BASE" >/dev/null
    buildah rm "$ctr" >/dev/null
    rm -f "$rootfs"
  fi
  base_opt=(--opt "from=$LOCAL_BASE")
  image=localhost/lookalike:${tag#*:}-localbase
fi

say "step 4/4 bentoml containerize --backend buildah -> $image"
started=$(date +%s)
"$BIN/bentoml" containerize "$tag" --backend buildah -t "$image" \
  --opt isolation=chroot --opt network=host "${base_opt[@]}"
size=$(buildah images --format '{{.Size}}' "$image" | head -n 1)
say "DONE: image $image (${size:-size unknown}) in $(( $(date +%s) - started )) s"
say "  try it here (podman run does not work on this machine): ctr=\$(buildah from $image) &&"
say "    buildah run --isolation chroot --network host \$ctr -- /home/bentoml/bento/env/docker/entrypoint.sh serve"
