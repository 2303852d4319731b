#!/usr/bin/env bash
# Prepare a CI machine for the sandbox tests: bubblewrap, a non-root test user, a Docker
# daemon and the local sandbox image. Idempotent: every step checks first and does nothing
# when already done.
#
#   .ci/sandbox-setup.sh [--no-docker] [--image TAG]
#
# Environment: DECAPOD_SANDBOX_IMAGE (default decapod/sandbox:local, the config default),
# DECAPOD_TEST_USER (default decapod-ci: tests/sandbox/test_sandbox_nonroot.py runs the
# gateway as this user, as the shipped systemd unit runs it as a non-root one),
# DOCKERD_LOG (default /var/log/decapod-dockerd.log), DOCKERD_WAIT (seconds, default 60).
# Docker is optional for the test suite: where it cannot be installed, or started without
# root, the script says so and exits 0 (the docker tests then skip, with that reason).
# A daemon that was started but never answers, or a failed image build, is an error.
set -euo pipefail

IMAGE="${DECAPOD_SANDBOX_IMAGE:-decapod/sandbox:local}"
TEST_USER="${DECAPOD_TEST_USER:-decapod-ci}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/decapod-dockerd.log}"
DOCKERD_WAIT="${DOCKERD_WAIT:-60}"
WANT_DOCKER=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-docker) WANT_DOCKER=0 ;;
        --image) IMAGE="$2"; shift ;;
        -h|--help) sed -n "2,14p" "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'sandbox-setup: %s\n' "$*"; }

APT_UPDATED=0
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        say "not root: cannot install $*"
        return 1
    fi
    if [[ $APT_UPDATED -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# bubblewrap, and the tools its launcher chains through (setpriv, prlimit, unshare, mount)
command -v bwrap >/dev/null || { say "installing bubblewrap"; apt_install bubblewrap; }
for tool in setpriv prlimit unshare; do
    command -v "$tool" >/dev/null || apt_install util-linux
done
command -v mount >/dev/null || apt_install mount
# The new root is empty, so the probe binds /usr to find `true` (a bare `bwrap ... true`
# fails with "execvp true: No such file" even where bwrap works).
if bwrap --unshare-all --unshare-user --uid 1000 --ro-bind /usr /usr --symlink usr/lib /lib \
    --symlink usr/lib64 /lib64 --symlink usr/bin /bin /usr/bin/true 2>/dev/null; then
    say "bwrap probe ok ($(bwrap --version))"
else
    say "bwrap probe FAILED: user namespaces may be restricted (AppArmor userns, sysctl)"
fi

# The user the non-root sandbox tests switch to (with setpriv) when they run as root. As
# any other user the tests need none: they run the gateway as that user itself.
if id -u "$TEST_USER" >/dev/null 2>&1; then
    say "test user $TEST_USER present (uid $(id -u "$TEST_USER"))"
elif [[ $(id -u) -eq 0 ]]; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        "$TEST_USER"
    say "created test user $TEST_USER (uid $(id -u "$TEST_USER"))"
else
    say "not root: no test user needed (the non-root tests run as $(id -un))"
fi
# For the log: which cgroups the sandbox can use here (docs/sandbox.md, "Limits")
case "$(stat -fc %T /sys/fs/cgroup 2>/dev/null || true)" in
    cgroup2fs) cgroups="cgroup v2 (unified)" ;;
    tmpfs) cgroups="cgroup v1$([[ -e /sys/fs/cgroup/unified ]] && echo ' + v2 (hybrid)')" ;;
    *) cgroups="no cgroup hierarchy" ;;
esac
say "$cgroups; kernel $(uname -r)"

[[ $WANT_DOCKER -eq 1 ]] || { say "docker skipped (--no-docker)"; exit 0; }

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null; then
    say "installing docker.io"
    apt_install docker.io || { say "docker.io not installed; docker tests will skip"; exit 0; }
fi

if docker_answers; then
    say "docker daemon already answers"
else
    if [[ $(id -u) -ne 0 ]]; then
        say "no docker daemon and not root: docker tests will skip"
        exit 0
    fi
    say "starting dockerd (log: $DOCKERD_LOG)"
    # No systemd on CI machines. No iptables and no bridge: sandbox containers use
    # network_mode=none, so no NAT network on private addresses is ever created.
    nohup dockerd --host unix:///var/run/docker.sock --iptables=false --ip-masq=false \
        --bridge=none >>"$DOCKERD_LOG" 2>&1 </dev/null &
    started=$SECONDS
    deadline=$((SECONDS + DOCKERD_WAIT))
    until docker_answers; do
        if (( SECONDS >= deadline )); then
            say "dockerd did not answer within ${DOCKERD_WAIT}s; last log lines:"
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    say "dockerd answers after $((SECONDS - started))s"
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    say "image $IMAGE present"
    exit 0
fi

# No registry: import a skeleton root filesystem. The sandbox binds the host's /usr,
# /etc/alternatives and /etc/ssl read-only over it (see sandbox.docker_ro_binds).
say "building $IMAGE from a rootfs skeleton"
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
# /sbin stays a real directory: with init=True the daemon mounts /sbin/docker-init there,
# which fails when /sbin points into the read-only /usr bind.
mkdir -p "$rootfs"/{usr,sbin,etc/alternatives,etc/ssl,tmp,proc,dev,sys,work}
chmod 1777 "$rootfs/tmp"
for link in bin lib lib64; do ln -s "usr/$link" "$rootfs/$link"; done
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/usr/sbin/nologin
sandbox:x:1000:1000:sandbox:/work:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
sandbox:x:1000:
nogroup:x:65534:
GROUP
tar -C "$rootfs" -c . | docker import \
    --change 'USER 65534:65534' --change 'WORKDIR /work' \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin HOME=/work' - "$IMAGE" >/dev/null
say "image $IMAGE built"
