"""`[store]`: where the database is. SQLite in the home folder unless a URL says otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from bot.config_base import EnvName, Section
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.progress import ProgressSink
    from bot.store import Store

_SCHEMES = ("sqlite", "postgresql", "postgres")


class StoreConfig(Section):
    #: "sqlite:////absolute/path.db", "sqlite:///relative.db" (in the home folder), or
    #: "postgresql://user@host:port/database"; empty: decapod.db in the home folder
    url: str = ""
    #: the environment variable holding the PostgreSQL password (never the URL, never the file)
    password_env: EnvName = ""
    #: PostgreSQL connections for reads (the writes have one of their own)
    pool_size: int = Field(default=4, ge=1, le=64)

    @field_validator("url")
    @classmethod
    def _known_url(cls, url: str) -> str:
        if not url:
            return url
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ValueError(
                f"{url!r}: expected sqlite:///path or postgresql://user@host:port/database"
            )
        if parts.scheme == "sqlite":
            if parts.netloc or not parts.path.strip("/"):
                raise ValueError(f"{url!r}: expected sqlite:///path/to/file.db (three slashes)")
            return url
        if parts.password is not None:
            raise ValueError(
                "the URL holds a password: remove it and name an environment variable holding "
                "it in store.password_env"
            )
        if not parts.hostname or not parts.path.strip("/"):
            raise ValueError(f"{url!r}: expected postgresql://user@host:port/database")
        return url

    @model_validator(mode="after")
    def _password_for_postgres(self) -> StoreConfig:
        if self.password_env and not self.is_postgres:
            raise ValueError("password_env is for a postgresql:// url only")
        return self

    @property
    def is_postgres(self) -> bool:
        return urlsplit(self.url).scheme in ("postgresql", "postgres")

    def sqlite_path(self, home: Path) -> Path:
        if not self.url or self.is_postgres:
            return home / "decapod.db"
        path = Path(urlsplit(self.url).path[1:]).expanduser()  # "sqlite:///x" is home/x
        return path if path.is_absolute() else home / path

    def password(self) -> str | None:
        """The password from the environment; a named variable that is unset is an error
        (a silent empty password would fail later, and less plainly)."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if not value:
            raise ConfigError(
                f"store.password_env: the environment variable {self.password_env} is not set"
            )
        return value


def open_store(
    store: StoreConfig, home: Path, *, migration_progress: ProgressSink | None = None
) -> Store:
    """The configured store, not yet started."""
    if store.is_postgres:
        from bot.store.pg_store import PgStore

        return PgStore(
            store.url,
            password=store.password(),
            pool_size=store.pool_size,
            migration_progress=migration_progress,
        )
    from bot.store import Store

    return Store(store.sqlite_path(home), migration_progress=migration_progress)
