#!/usr/bin/env bash
# Build the oomtrace container image from deploy/Dockerfile: the wheel first, then the image.
# Where no registry is reachable (as here), the base image debian:bookworm-slim is made
# locally (mmdebstrap → docker import) and tagged with that name, so the same Dockerfile builds
# unchanged where a registry exists. The docker CLI talks to $DOCKER_HOST (default: the
# system's daemon).
#   scripts/build-container-image.sh [TAG]       default TAG: oomtrace:<version>
# Cache: $OOMTRACE_IMAGE_CACHE (default /var/cache/oomtrace-image): the base image's tarball
# (rebuilt after 7 days) and the .debs it was made from.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"  # one with `build` and pip (the project's .venv), Python 3.11 as the image's
version="$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
tag="${1:-oomtrace:$version}"
cache="${OOMTRACE_IMAGE_CACHE:-/var/cache/oomtrace-image}"
base=debian:bookworm-slim
work="$(mktemp -d /var/tmp/oomtrace-image.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache/debs"

if ! docker image inspect "$base" >/dev/null 2>&1; then
    tarball="$cache/bookworm-minbase.tar"
    if [ ! -s "$tarball" ] || [ -n "$(find "$tarball" -mtime +7)" ]; then
        mmdebstrap --mode=root --variant=minbase --quiet \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --skip=download/empty --skip=essential/unlink \
            --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
            --setup-hook="sync-in '$cache/debs' /var/cache/apt/archives/" \
            --customize-hook="sync-out /var/cache/apt/archives '$cache/debs'" \
            --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
            bookworm "$cache/new.tar" http://deb.debian.org/debian
        mv "$cache/new.tar" "$tarball"
    fi
    docker import --change 'CMD ["bash"]' "$tarball" "$base" >/dev/null
fi

# The wheel and every wheel it needs, from here: the image's pip installs from the build context
# only (--no-index), so the build needs no access to PyPI (here, PyPI is reached through a
# TLS proxy whose CA the base image does not have) and installs what was tested.
"$python" -m build --no-isolation --wheel --outdir "$work/dist" . >/dev/null
"$python" -m pip download -q --only-binary=:all: --dest "$work/dist" "$work"/dist/oomtrace-*.whl
cp deploy/Dockerfile "$work/"
# --network host: the build's apt-get needs the network, and the daemon may run without a bridge.
docker build --network host -q -t "$tag" "$work" >/dev/null
echo "$tag $(docker image inspect --format '{{.Size}}' "$tag") bytes"
