"""Which of the configured limits a backend really enforces, and by what.

A backend that cannot enforce one (a non-root gateway with no cgroup to put commands in
has no bound on the memory of a whole process tree) is refused at start unless the owner
sets `sandbox.allow_unenforced_limits = true`; the start-up line and `decapod doctor` name
every limit that is missing and why.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the limits whose enforcement depends on the host; CPU time, file size and open files
#: are rlimits (per process) that every backend sets, the wall clock is the gateway's own
MEMORY = "memory"
PROCESSES = "processes"
CPU_SHARE = "CPU share"
HOST_DEPENDENT = (MEMORY, PROCESSES, CPU_SHARE)


@dataclass(frozen=True, slots=True)
class Enforcement:
    """`by` maps each enforced limit to its mechanism; `missing` each other one to what
    bounds it instead, if anything ("" when nothing does); `cause` says why they are
    missing."""

    by: dict[str, str]
    missing: dict[str, str]
    cause: str
    #: the workspace quota, as shown: "256 MiB, 100000 entries"
    workspace: str

    def summary(self) -> str:
        """One clause for the start-up line, e.g. `memory, processes, CPU share: cgroup v1;
        CPU time, file size, open files: rlimits; workspace: 256 MiB, 100000 entries`."""
        groups: dict[str, list[str]] = {}
        for limit, mechanism in self.by.items():
            groups.setdefault(mechanism, []).append(limit)
        parts = [f"{', '.join(limits)}: {mechanism}" for mechanism, limits in groups.items()]
        parts.append(f"CPU time, file size, open files: rlimits; workspace: {self.workspace}")
        text = "; ".join(parts)
        if self.missing:
            text += f"; NOT enforced: {self.missing_text()}"
        return text

    def missing_text(self) -> str:
        limits = [f"{limit} ({note})" if note else limit for limit, note in self.missing.items()]
        return f"{', '.join(limits)}: {self.cause}"


def refusal(backend: str, enforcement: Enforcement) -> str:
    """Why a backend that cannot enforce every limit is not used."""
    return (
        f"cannot enforce {enforcement.missing_text()}; "
        "run the gateway under systemd with Delegate=yes (systemd/decapod.service) or as "
        f"root, or set sandbox.allow_unenforced_limits = true to run {backend} commands anyway"
    )
