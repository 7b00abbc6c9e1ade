#!/usr/bin/env bash
# The Dockerfile's base image made from Debian packages, for a machine that reaches a Debian
# mirror but no container registry: Debian 12 (bookworm) with python3 and python3-venv, written
# as a tarball to import. tests/test_container.py builds its base with this script.
#
#   deploy/base-image.sh debian-python.tar
#   podman import debian-python.tar localhost/debian-python:bookworm     # or: docker import
#   podman build --format docker --build-arg BASE=localhost/debian-python:bookworm -t sse-service .
#
# Needs mmdebstrap (apt-get install mmdebstrap) and root, or a user namespace. DEBIAN_MIRROR picks
# another mirror (default http://deb.debian.org/debian).
set -euo pipefail
out="${1:?usage: deploy/base-image.sh OUTPUT.tar}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
exec mmdebstrap \
    --variant=minbase \
    --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$out" \
    "deb $mirror bookworm main" \
    "deb $mirror bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
