"""compose.scale.yaml (README, "Running at scale"): PostgreSQL with pgvector, two replicas of
the project's image behind a balancer. Images cannot be pulled here, so the file is checked
for its structure, and by `docker compose config` where Compose is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bot.cluster.node import check_shared_secrets
from bot.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SCALE = ROOT / "compose.scale.yaml"
REPLICAS = ("replica-a", "replica-b")
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SCALE.read_text(encoding="utf-8"))
    return data


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if kind == "?":
            raise ValueError(f"{name}: {rest}")
        return rest if kind == "-" else ""

    return _VARIABLE.sub(one, value)


def test_services_images_and_healthchecks() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", *REPLICAS, "balancer"}
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    single = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))["services"]
    for name in REPLICAS:
        replica = services[name]
        # the project's image, built as compose.yaml builds it, hardened the same way
        assert replica["image"] == single["decapod"]["image"]
        assert replica["build"] == single["decapod"]["build"]
        for key in ("read_only", "cap_drop", "security_opt", "init"):
            assert replica[key] == single["decapod"][key], key
        assert replica["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert replica["command"] == ["--config", "/etc/decapod/config.toml", "run"]
    for name, service in services.items():
        assert service["healthcheck"]["test"], f"{name} has no healthcheck"
        assert service["restart"] == "unless-stopped"
    # a home of its own for each replica, the same config for both
    homes = [next(v for v in services[n]["volumes"] if v.endswith(":/data")) for n in REPLICAS]
    assert len(set(homes)) == 2
    configs = {next(v for v in services[n]["volumes"] if "config.toml" in v) for n in REPLICAS}
    assert configs == {"./deploy/scale/config.toml:/etc/decapod/config.toml:ro"}
    # the balancer sends to every replica
    nginx = (ROOT / "deploy/scale/nginx.conf").read_text(encoding="utf-8")
    assert sorted(re.findall(r"server (replica-\w+):8787", nginx)) == sorted(REPLICAS)
    assert "non_idempotent" in nginx  # a webhook a dead replica dropped is tried on the other


def test_the_password_comes_from_the_environment_file_only() -> None:
    text = SCALE.read_text(encoding="utf-8")
    services = _compose()["services"]
    assert (
        services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}"
    )
    for name in REPLICAS:
        env = services[name]["environment"]
        assert env["DECAPOD_STORE__PASSWORD_ENV"] == "DECAPOD_DB_PASSWORD"
        assert (
            env["DECAPOD_DB_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        )
        url = urlsplit(env["DECAPOD_STORE__URL"])
        assert url.username == "decapod" and url.password is None, "no password in the URL"
    with pytest.raises(ValueError, match=r"set POSTGRES_PASSWORD in \.env"):
        _interpolate(services["postgres"]["environment"]["POSTGRES_PASSWORD"], {})
    # no literal secret anywhere: every key and token is a variable
    for line in text.splitlines():
        if re.search(r"(PASSWORD|TOKEN|KEY|SECRET):\s", line) and "_ENV:" not in line:
            assert "${" in line, line


def test_nothing_is_published_beyond_the_loopback() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            published = _interpolate(str(port), {})
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published}"
        if name != "balancer":
            assert "ports" not in service, f"{name} is reached through the balancer only"


def test_every_replica_reads_the_example_config_as_one_of_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"POSTGRES_PASSWORD": "not-a-real-password"}
    replica = _compose()["services"]["replica-a"]
    environ = {k: _interpolate(str(v), env) for k, v in replica["environment"].items()}
    environ["DECAPOD_HOME"] = str(tmp_path)
    config = load_config(ROOT / "deploy/scale/config.example.toml", tmp_path, environ)
    assert config.store.is_postgres and config.store.url == environ["DECAPOD_STORE__URL"]
    monkeypatch.setenv("DECAPOD_DB_PASSWORD", "not-a-real-password")
    assert config.store.password() == "not-a-real-password"
    check_shared_secrets(config)  # its Telegram webhook has a secret every replica shares
    assert config.channels["telegram"].mode == "webhook"


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed")
def test_docker_compose_accepts_it(tmp_path: Path) -> None:
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        if os.environ.get("DECAPOD_TEST_REQUIRE_COMPOSE") == "1":
            pytest.fail(f"DECAPOD_TEST_REQUIRE_COMPOSE is set: {version.stderr.strip()}")
        pytest.skip("the docker compose plugin is not installed")
    base = ["docker", "compose", "-f", str(SCALE), "--project-directory", str(ROOT)]
    clean = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    refused = subprocess.run([*base, "config"], capture_output=True, text=True, env=clean)
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD in .env" in refused.stderr
    done = subprocess.run(
        [*base, "config", "--format", "json"],
        capture_output=True,
        text=True,
        env={**clean, "POSTGRES_PASSWORD": "not-a-real-password"},
        check=True,
    )
    services = json.loads(done.stdout)["services"]
    assert set(services) == {"postgres", *REPLICAS, "balancer"}
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert [(p["host_ip"], p["target"]) for p in published] == [("127.0.0.1", 8080)]
    assert services["replica-b"]["environment"]["DECAPOD_DB_PASSWORD"] == "not-a-real-password"
