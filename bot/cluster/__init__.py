"""Several gateway replicas on one PostgreSQL database (docs/architecture.md, "Scale-out")."""
