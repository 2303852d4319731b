"""Several gateway replicas on one PostgreSQL database."""
