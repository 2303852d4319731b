#!/usr/bin/env bash
# The README's install routes, each tried as a newcomer would and checked against the fake
# LLM (.ci/fake_llm.py on 127.0.0.1):
#
#   wheel    python -m build: wheel and sdist, no setuptools warnings, twine check --strict
#   pipx     the README's pipx lines; decapod --version, init, config check, an answer
#   uv       the README's uv lines; the same checks
#   source   the checkout's .venv (make, as `make test` left it); the same checks
#   docker   the README's compose lines: image, /health, a chat, a command in the sandbox
#   systemd  the unit header's lines, systemd-analyze verify, the unit's command lines run
#            as an unprivileged user with the config handed over as a credential; a chat
#            and a command in the sandbox
#
#   .ci/install-routes.sh [ROUTE...]        (default: all, in that order)
#
# A line the README (or the unit's header) prints is run only after checking that the file
# still prints exactly that line, so the two cannot drift apart. The systemd route installs
# into /opt/decapod and /etc: it runs only as root with CI=true (or DECAPOD_SYSTEM_ROUTE=1).
# Needs: .venv with the test dependencies (runs the fake LLM), a Docker daemon
# (.ci/sandbox-setup.sh starts one). Prints each step's time; any failure exits non-zero.
# shellcheck disable=SC2016  # the README's lines and the sandbox's command expand later
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

ROUTES=("$@")
((${#ROUTES[@]})) || ROUTES=(wheel pipx uv source docker systemd)
PY="${PYTHON:-$ROOT/.venv/bin/python}"
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' bot/__init__.py)
WORK=$(mktemp -d /var/tmp/decapod-routes.XXXXXX)
chmod 0755 "$WORK"  # the systemd route's unprivileged user reads below it
FAKE_PID=""
TIMES=()

say() { printf '\n== %s\n' "$*"; }
die() { printf 'install-routes: FAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
    if [[ -n $FAKE_PID ]]; then kill "$FAKE_PID" 2>/dev/null || true; fi
    if [[ -n ${COMPOSE_PROJECT_NAME:-} ]]; then
        docker compose down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Run a line that FILE prints, verbatim (default README.md; PREFIX: the unit header's "#   ").
printed() {
    local line=$1 file=${2:-README.md} prefix=${3:-}
    grep -qxF -- "$prefix$line" "$file" || die "$file no longer prints the line: $line"
    printf '+ %s\n' "$line"
    eval "$line"
}

timed() {
    local name=$1 started=$SECONDS
    shift
    say "$name"
    "$@"
    TIMES+=("$(printf '%-8s %4ds' "$name" $((SECONDS - started)))")
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_fake_llm() {
    [[ -x $PY ]] || die "no $PY: run make test (or set PYTHON) first"
    PYTHONPATH="$ROOT" "$PY" .ci/fake_llm.py >"$WORK/fake_llm.out" 2>"$WORK/fake_llm.err" &
    FAKE_PID=$!
    local port=""
    for _ in $(seq 100); do
        port=$(awk '/^PORT/ {print $2}' "$WORK/fake_llm.out")
        [[ -n $port ]] && break
        kill -0 "$FAKE_PID" 2>/dev/null || { cat "$WORK/fake_llm.err" >&2; die "fake LLM died"; }
        sleep 0.1
    done
    [[ -n $port ]] || die "the fake LLM did not say its port"
    FAKE_URL="http://127.0.0.1:$port/v1"
    echo "fake LLM at $FAKE_URL"
}

tools_venv() {
    [[ -x $WORK/tools/bin/pipx ]] && return
    python3 -m venv "$WORK/tools"
    "$WORK/tools/bin/pip" install -q build twine pipx uv >"$WORK/tools.log" 2>&1 ||
        { tail -n 40 "$WORK/tools.log"; die "pip install build twine pipx uv"; }
}

# One answer from an installed decapod: `decapod ask` where it exists, else a chat on stdin.
one_answer() {
    local bin=$1 home=$2
    local help
    help=$("$bin" --help)
    if grep -qE '^ +ask +' <<<"$help"; then
        "$bin" --home "$home" ask "hello"
    else
        printf 'hello\n' | "$bin" --home "$home" chat
    fi
}

# The checks every installed `decapod` gets: version, a config, an answer from the fake.
check_decapod() {
    local bin=$1 home
    home=$(mktemp -d "$WORK/home.XXXXXX")
    local version
    version=$("$bin" --version)
    echo "$version"
    [[ $version == "decapod $VERSION" ]] || die "$bin --version: $version"
    "$bin" --home "$home" init --provider ollama --base-url "$FAKE_URL" --yes
    "$bin" --home "$home" config check
    local answer
    answer=$(one_answer "$bin" "$home") || die "$bin gave no answer"
    printf '%s\n' "$answer"
    grep -q "pong from the fake model" <<<"$answer" || die "$bin: not the fake model's answer"
}

route_wheel() {
    tools_venv
    "$WORK/tools/bin/python" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 ||
        { tail -n 40 "$WORK/build.log"; die "python -m build"; }
    tail -n 1 "$WORK/build.log"
    if grep -iE 'deprecat|SetuptoolsWarning' "$WORK/build.log"; then
        die "the build printed the warnings above"
    fi
    "$WORK/tools/bin/twine" check --strict "$WORK"/dist/*
    ls -l "$WORK/dist"
    # the data files the code reads at run time: the web UI's pages, the bundled skills and
    # the default embedder's model
    local listing
    listing=$("$WORK/tools/bin/python" -m zipfile -l "$WORK"/dist/decapod-*.whl)
    for wanted in bot/webui/templates/welcome.html bot/webui/static/chat.js \
        bot/skills/bundled/daily-briefing/SKILL.md \
        bot/memory/data/potion-base-8M/model.safetensors \
        bot/memory/data/potion-base-8M/tokenizer.json bot/memory/data/potion-base-8M/LICENSE; do
        grep -qF "$wanted" <<<"$listing" || die "the wheel has no $wanted"
    done
}

route_pipx() {
    tools_venv
    export PIPX_HOME="$WORK/pipx" PIPX_BIN_DIR="$WORK/pipx/bin" PIPX_MAN_DIR="$WORK/pipx/man"
    local -x PATH="$WORK/tools/bin:$PIPX_BIN_DIR:$PATH"
    rm -rf dist
    printed 'pipx run --spec build pyproject-build' >"$WORK/pipx-build.log" 2>&1 ||
        { tail -n 40 "$WORK/pipx-build.log"; die "pipx run build"; }
    printed 'pipx install "$(ls dist/decapod-*.whl)[all]"'
    printed 'decapod --version'
    check_decapod "$PIPX_BIN_DIR/decapod"
}

route_uv() {
    tools_venv
    export UV_TOOL_DIR="$WORK/uv/tools" UV_TOOL_BIN_DIR="$WORK/uv/bin"
    local -x PATH="$WORK/tools/bin:$UV_TOOL_BIN_DIR:$PATH"
    rm -rf dist
    printed 'uv build' >"$WORK/uv-build.log" 2>&1 || { tail -n 40 "$WORK/uv-build.log"; die "uv build"; }
    printed 'uv tool install "$(ls dist/decapod-*.whl)[all]"'
    check_decapod "$UV_TOOL_BIN_DIR/decapod"
    rm -rf dist
}

route_source() {
    grep -qF 'make run ' README.md || die "README.md no longer starts with make run"
    [[ -x .venv/bin/decapod ]] || die "no .venv/bin/decapod: make test installs it"
    check_decapod "$ROOT/.venv/bin/decapod"
}

wait_healthy() {
    local container=$1 status=""
    for _ in $(seq 90); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$container")
        [[ $status == healthy ]] && return 0
        [[ $(docker inspect -f '{{.State.Running}}' "$container") == true ]] || break
        sleep 1
    done
    docker compose logs --tail 40 decapod >&2 || true
    die "the container is $status, not healthy"
}

route_docker() {
    docker info >/dev/null 2>&1 || die "no Docker daemon (.ci/sandbox-setup.sh starts one)"
    bash .ci/compose-plugin.sh
    local started=$SECONDS
    DECAPOD_BASE=$(bash .ci/docker-base.sh decapod/base:local)
    echo "base image: $DECAPOD_BASE ($((SECONDS - started))s)"
    # compose.yaml as the README runs it, with CI's network and base (.ci/compose.ci.yaml)
    export DECAPOD_BASE COMPOSE_FILE=compose.yaml:.ci/compose.ci.yaml
    export COMPOSE_PROJECT_NAME=decapod-ci DECAPOD_PORT
    DECAPOD_PORT=$(free_port)
    docker compose down -v --remove-orphans >/dev/null 2>&1 || true
    started=$SECONDS
    printed 'docker compose build' >"$WORK/image.log" 2>&1 || { tail -n 40 "$WORK/image.log"; die "image build"; }
    echo "image built in $((SECONDS - started))s"
    grep -qxF 'docker compose run --rm decapod init --provider openai --yes' README.md ||
        die "README.md no longer prints the compose init line"
    # the README's init, with the fake's address for the provider's
    docker compose run --rm decapod init --provider ollama --base-url "$FAKE_URL" --yes
    printed 'docker compose up -d'
    local container
    container=$(docker compose ps -q decapod)
    wait_healthy "$container"
    echo "healthy; /health from the host:"
    "$PY" - "$DECAPOD_PORT" <<'PY'
import json, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
body = json.loads(opener.open(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=10).read())
print(body["status"], "|", body.get("sandbox"))
assert body["status"] == "ok", body
# the web UI's first-run page, rendered from the image's templates (the host network: CI's
# browser would be a loopback caller)
page = opener.open(f"http://127.0.0.1:{sys.argv[1]}/", timeout=10).read().decode()
assert "<title>Set up Decapod" in page, page[:300]
print("web UI: first-run page served")
PY
    grep -qxF 'docker compose exec decapod decapod chat' README.md ||
        die "README.md no longer prints the compose chat line"
    # the README's chat line, without a terminal (-T); the second message makes the fake
    # model call `exec`: its output in the reply proves the command ran in the sandbox
    local transcript
    transcript=$(printf 'hello\nrun: echo sandbox-$((6*7)) uid=$(id -u) host=$(hostname)\n' |
        docker compose exec -T decapod decapod chat) || die "docker compose exec ... chat"
    printf '%s\n' "$transcript"
    grep -q "pong from the fake model" <<<"$transcript" || die "no answer through the container"
    grep -q "sandbox-42 uid=1000 host=sandbox" <<<"$transcript" ||
        die "the command did not run in the sandbox inside the container"
    docker compose down -v --remove-orphans
}

route_systemd() {
    [[ $(id -u) -eq 0 && (${CI:-} == true || ${DECAPOD_SYSTEM_ROUTE:-} == 1) ]] ||
        die "the systemd route installs into /opt and /etc: run it as root with CI=true"
    command -v systemd-analyze >/dev/null || apt-get install -y -qq --no-install-recommends systemd
    local unit=systemd/decapod.service
    # a root shell on a server: the system's python3 (ProtectHome hides /root and /home)
    (
        export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        /usr/bin/python3 -c 'import ensurepip' 2>/dev/null ||
            apt-get install -y -qq --no-install-recommends python3-venv
        rm -rf /opt/decapod /etc/decapod
        local header="#   "
        printed 'python3 -m venv /opt/decapod' "$unit" "$header"
        printed "/opt/decapod/bin/pip install '.[all]'" "$unit" "$header" >"$WORK/opt.log" 2>&1 ||
            { tail -n 40 "$WORK/opt.log"; die "pip install into /opt/decapod"; }
        [[ $(/opt/decapod/bin/decapod --version) == "decapod $VERSION" ]] || die "/opt/decapod/bin/decapod"
        printed '/opt/decapod/bin/python -P -m bot.code_cache      # generated code, compiled once for all starts' \
            "$unit" "$header"
        # written under root's umask, read by the service's own user
        for table in /opt/decapod/lib/python3*/site-packages/bot/__pycache__/generated.*.bin; do
            [[ $(stat -c '%a' "$table") == 644 ]] || die "$table: not readable by the service"
        done
        grep -qxF "${header}/opt/decapod/bin/decapod --home /etc/decapod init --provider openai --yes" \
            "$unit" || die "$unit no longer prints its init line"
        # the header's init, with the fake's address for the provider's
        /opt/decapod/bin/decapod --home /etc/decapod init --provider ollama --base-url "$FAKE_URL" --yes
        printed 'install -m 0600 /dev/null /etc/decapod/env     # then put OPENAI_API_KEY=..., tokens in it' \
            "$unit" "$header"
        printed 'install -m 0644 systemd/decapod.service /etc/systemd/system/decapod.service' "$unit" "$header"
        printed 'systemd-analyze verify /etc/systemd/system/decapod.service' "$unit" "$header"
        stat -c '%a %U %n' /etc/decapod /etc/decapod/config.toml /etc/decapod/env
    )
    # The unit's command lines, as systemd would run them: an unprivileged uid with no
    # capabilities, its config a private copy (LoadCredential=), its home the state folder.
    local uid=61234 cred="$WORK/credentials" state="$WORK/state" exec_start
    install -d -m 0700 -o "$uid" -g "$uid" "$cred" "$state"
    install -m 0400 -o "$uid" -g "$uid" /etc/decapod/config.toml "$cred/config.toml"
    # Under systemd, Delegate=yes gives the service a cgroup of its own, in which the sandbox
    # bounds each command's memory and CPU share. Run without systemd, as here, there is no
    # such group and a non-root gateway keeps exec off; CI's copy of the config opts in, so
    # that the route still proves a command runs in the sandbox as the service's user.
    grep -q '^\[sandbox\]' "$cred/config.toml" && die "the init config has a [sandbox] table now"
    printf '\n[sandbox]\nallow_unenforced_limits = true\n' >>"$cred/config.toml"
    as_service() {
        setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs --bounding-set=-all \
            env -i PATH=/usr/bin:/bin LANG=C.UTF-8 USER=decapod LOGNAME=decapod HOME="$state" \
            DECAPOD_HOME="$state" "$@"
    }
    exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
    [[ $exec_start == '/opt/decapod/bin/decapod --config %d/config.toml run' ]] ||
        die "ExecStart changed: $exec_start"
    as_service /opt/decapod/bin/decapod --config "$cred/config.toml" migrate
    local answer
    answer=$(printf 'hello\nrun: echo sandbox-$((6*7)) uid=$(id -u) host=$(hostname)\n' |
        as_service /opt/decapod/bin/decapod --config "$cred/config.toml" chat)
    printf '%s\n' "$answer"
    grep -q "pong from the fake model" <<<"$answer" || die "no answer as the service's user"
    grep -q "sandbox-42 uid=1000 host=sandbox" <<<"$answer" ||
        die "the command did not run in the sandbox as the service's user"
    stat -c '%a %U %n' "$state" "$state/decapod.db"
}

start_fake_llm
for route in "${ROUTES[@]}"; do
    declare -F "route_$route" >/dev/null || die "unknown route $route"
    timed "$route" "route_$route"
done
say "install routes: all passed"
printf '  %s\n' "${TIMES[@]}"
