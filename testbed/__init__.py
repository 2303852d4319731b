"""What the tests and the benchmarks both run against and neither owns: a throwaway
PostgreSQL cluster (pgcluster.py). Not part of the distribution: pyproject.toml ships bot/
and channels/ only."""
