"""The database roles of migration 0006 and their passwords, which never appear in code or SQL files.

- ``sitrep_reader``: consumers (a warehouse, BI tools). SELECT on the versioned views (reports_v1, ...)
  and nothing else; every session is read-only.
- ``sitrep_loader``: the pipeline. Reads and writes the tables, creates its temporary staging tables.

:func:`set_passwords` sends each password as a SCRAM-SHA-256 verifier computed on the client (what
psql's ``\\password`` does), so the clear text never reaches the server, its logs or pg_stat_activity.
``sitrep roles passwords`` reads them from SITREP_READER_PASSWORD and SITREP_LOADER_PASSWORD.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import psycopg
from psycopg import sql

from sitrep.errors import ConfigError

__all__ = ["LOADER", "READER", "ROLES", "passwords_from_env", "set_passwords"]

READER = "sitrep_reader"
LOADER = "sitrep_loader"
#: role -> the environment variable holding its password
ROLES = {READER: "SITREP_READER_PASSWORD", LOADER: "SITREP_LOADER_PASSWORD"}


def passwords_from_env() -> dict[str, str]:
    """The passwords that are set in the environment, by role."""
    found = {role: os.environ[var] for role, var in ROLES.items() if os.environ.get(var)}
    if not found:
        raise ConfigError(f"no password to set: export {' and/or '.join(ROLES.values())} first")
    return found


def set_passwords(conn: psycopg.Connection, passwords: Mapping[str, str]) -> list[str]:
    """Set the passwords of sitrep's roles; returns the roles changed."""
    changed = []
    with conn.transaction():
        for role, password in passwords.items():
            if role not in ROLES:
                raise ConfigError(f"{role!r} is not one of sitrep's roles ({', '.join(ROLES)})")
            if len(password) < 12:
                raise ConfigError(f"the password for {role} is shorter than 12 characters: choose a longer one")
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier.decode())))
            changed.append(role)
    return changed
