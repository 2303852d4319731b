"""`[sandbox]` settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.sandbox.base import Limits

DEFAULT_IMAGE = "decapod/sandbox:local"


class SandboxLimits(BaseModel):
    """Per-command limits (`[sandbox.limits]`)."""

    model_config = ConfigDict(extra="forbid")

    memory_mb: int = Field(default=512, ge=32)
    pids: int = Field(default=128, ge=8)
    cpu_seconds: int = Field(default=60, ge=1)
    #: the longest timeout a command may ask for
    wall_seconds: float = Field(default=300.0, gt=0)
    file_size_mb: int = Field(default=64, ge=1)
    nofile: int = Field(default=1024, ge=16)
    cpus: float = Field(default=1.0, gt=0)
    #: stdout and stderr are each cut here, before redaction
    output_bytes: int = Field(default=65536, ge=1024)

    def to_limits(self) -> Limits:
        return Limits(
            memory_mb=self.memory_mb,
            pids=self.pids,
            cpu_seconds=self.cpu_seconds,
            wall_seconds=self.wall_seconds,
            file_size_mb=self.file_size_mb,
            nofile=self.nofile,
            output_bytes=self.output_bytes,
            cpus=self.cpus,
        )


class SandboxConfig(BaseModel):
    """Where commands from a chat run, and who may run them (`[sandbox]`)."""

    model_config = ConfigDict(extra="forbid")

    #: auto = docker when a daemon answers and the image is present, else bwrap, else none
    backend: Literal["auto", "docker", "bwrap", "none"] = "auto"
    docker_image: str = DEFAULT_IMAGE
    #: host paths bound read-only into each container; the local image is an empty
    #: skeleton that borrows the host's /usr. Set to [] for a self-contained image.
    docker_ro_binds: list[str] = Field(
        default_factory=lambda: ["/usr", "/etc/alternatives", "/etc/ssl"]
    )
    #: the host uid/gid commands run as when the gateway runs as root (never 0)
    uid: int = Field(default=65534, ge=1)
    gid: int = Field(default=65534, ge=1)
    limits: SandboxLimits = Field(default_factory=lambda: SandboxLimits())
    #: a command's timeout when the model asks for none
    timeout_s: float = Field(default=30.0, gt=0)
    #: never: no approval; ask: dangerous-looking commands and any command in a context
    #: tainted by untrusted content need the owner's approval; always: every command does
    approval: Literal["never", "ask", "always"] = "ask"
    approval_timeout_s: float = Field(default=300.0, gt=0)
    exec_for_users: bool = False
    exec_in_groups: bool = False
    #: UNSAFE: with no sandbox available, run commands directly on the host (owner DMs only)
    allow_host_exec: bool = False
    #: run commands even where the backend cannot enforce every limit (e.g. total memory
    #: for a non-root gateway without a delegated cgroup); the start-up line says which
    allow_unenforced_limits: bool = False
    #: the directory under each cgroup v1 controller, or the child of the gateway's own
    #: cgroup v2 group, that holds one group per command
    cgroup_parent: str = Field(default="decapod-sandbox", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    workspace_max_age_days: float = Field(default=30.0, gt=0)
    #: a workspace's disk use (allocated bytes) and number of entries, measured by the
    #: gateway while each command runs and after it: growth past either is undone
    workspace_quota_mb: int = Field(default=256, ge=1)
    workspace_max_files: int = Field(default=100_000, ge=100)
