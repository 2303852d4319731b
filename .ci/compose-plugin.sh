#!/usr/bin/env bash
# Make `docker compose` (Compose v2, a Docker CLI plugin) available. Idempotent.
#
# Debian bookworm's docker.io has no Compose v2, and its docker-compose is v1, which cannot
# apply compose.yaml's `systempaths=unconfined`. Debian trixie packages v2 as docker-compose,
# a static Go binary (needs libc6 >= 2.34): it is fetched with apt from the configured mirror
# and only the plugin binary is installed, into /usr/local/lib/docker/cli-plugins.
set -euo pipefail

say() { printf 'compose-plugin: %s\n' "$*" >&2; }

if docker compose version >/dev/null 2>&1; then
    say "$(docker compose version)"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || { say "no docker compose, and not root to install it"; exit 1; }

MIRROR=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' |
    grep '/debian/\?$' | head -n 1) || true
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
apt_dir=$(mktemp -d)
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,deb,root}
# apt downloads as the _apt user
chmod -R a+rX "$apt_dir"
chown _apt "$apt_dir/deb" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" \
    >"$apt_dir/sources.list"
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
)
say "fetching Debian trixie's docker-compose (v2) from $MIRROR"
apt-get "${apt_opts[@]}" update -qq
(cd "$apt_dir/deb" && apt-get "${apt_opts[@]}" download docker-compose >/dev/null)
dpkg-deb -x "$apt_dir"/deb/docker-compose_*.deb "$apt_dir/root"
plugin="$apt_dir/root/usr/libexec/docker/cli-plugins/docker-compose"
[[ -x $plugin ]] || { say "the package holds no cli-plugins/docker-compose"; exit 1; }
install -D -m 0755 "$plugin" /usr/local/lib/docker/cli-plugins/docker-compose
docker compose version >&2
