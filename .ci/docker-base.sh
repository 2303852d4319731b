#!/usr/bin/env bash
# Build a local base image for the Dockerfile from Debian packages, for machines that cannot
# pull from a registry (the Dockerfile's default base is python:3.11-slim):
#
#   .ci/docker-base.sh [TAG]          (default decapod/base:local; prints the tag)
#   docker build --build-arg BASE=decapod/base:local ...
#
# A minbase debootstrap of this machine's Debian release from its configured apt mirror, with
# python3, python3-venv and bubblewrap, imported with `docker import`. The machine's extra CA
# certificates (/usr/local/share/ca-certificates) are trusted inside, so pip in the image build
# goes through the same TLS proxy the host does. Idempotent: an existing image is kept.
set -euo pipefail

TAG="${1:-decapod/base:local}"
say() { printf 'docker-base: %s\n' "$*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
    say "image $TAG present"
    echo "$TAG"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || { say "needs root (debootstrap)"; exit 1; }

# shellcheck disable=SC1091
. /etc/os-release
SUITE="${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}"
# the first Debian mirror apt is configured with (deb822 or one-line sources)
MIRROR=$(
    { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
      grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'
    } | grep -v -- '-security' | grep '/debian/\?$' | head -n 1
) || true
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap"
    # apt's and dpkg's progress go to stderr: stdout carries only the tag, which callers read
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
fi

rootfs=$(mktemp -d /var/tmp/decapod-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
say "debootstrap $SUITE from $MIRROR"
started=$SECONDS
debootstrap --variant=minbase --include=python3,python3-venv,bubblewrap,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"
shopt -s nullglob
extra_ca=(/usr/local/share/ca-certificates/*.crt)
if (( ${#extra_ca[@]} )); then
    cp "${extra_ca[@]}" "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
fi
# an image carries no package lists or caches; `apt-get update` fetches them when needed
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
CA=/etc/ssl/certs/ca-certificates.crt
tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV SSL_CERT_FILE=$CA PIP_CERT=$CA REQUESTS_CA_BUNDLE=$CA" \
    --change 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
say "image $TAG built in $((SECONDS - started))s"
echo "$TAG"
