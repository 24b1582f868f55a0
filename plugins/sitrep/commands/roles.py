"""``sitrep roles passwords``: set the passwords of sitrep_reader and sitrep_loader from the environment."""

from __future__ import annotations

import argparse

from sitrep.tables import Table, console


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    roles = subparsers.add_parser(
        "roles", help="the database roles for consumers (sitrep_reader) and the pipeline (sitrep_loader)",
    ).add_subparsers(dest="roles_command", required=True, metavar="ACTION")
    p = roles.add_parser(
        "passwords", help="set the roles' passwords from SITREP_READER_PASSWORD / SITREP_LOADER_PASSWORD",
        description="Sends each password as a SCRAM-SHA-256 verifier (the clear text never reaches the server). "
                    "Run it as a role that may ALTER ROLE (the one that runs migrations).",
    )
    p.set_defaults(func=cmd_passwords)


def cmd_passwords(args: argparse.Namespace) -> int:
    from sitrep import db, roles
    from sitrep.settings import Settings

    passwords = roles.passwords_from_env()
    with db.connect_settings(Settings.from_env(), start=True) as conn:
        db.migrate(conn)
        changed = roles.set_passwords(conn, passwords)
    table = Table(title="sitrep roles")
    for col in ("role", "for", "password"):
        table.add_column(col)
    for role, var in roles.ROLES.items():
        what = "consumers: SELECT on reports_v1 (and later views) only" if role == roles.READER else "the pipeline"
        table.add_row(role, what, f"set from {var}" if role in changed else "unchanged")
    console.print(table)
    return 0
