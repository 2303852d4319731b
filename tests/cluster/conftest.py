"""The `replica` fixture: gateways on one PostgreSQL database (tests/cluster/harness.py)."""

from tests.cluster.harness import replica

__all__ = ["replica"]
