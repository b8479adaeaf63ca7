"""The exceptions the CLI turns into one-line errors instead of tracebacks."""

from __future__ import annotations


def known_errors() -> tuple[type[Exception], ...]:
    import duckdb

    from shoal.actors.registry import UnknownRole
    from shoal.batch.units import BatchError
    from shoal.client import ClientError
    from shoal.daemon import OrchestratorError
    from shoal.mailbox.errors import MailboxError
    from shoal.paths import HomeError
    from shoal.settings import SettingsError
    from shoal.store.database import DatabaseError
    from shoal.store.queries import QueryError
    from shoal.store.space import DiskFull
    from shoal.workspace.git import WorkspaceError

    return (
        HomeError,
        SettingsError,
        OrchestratorError,
        MailboxError,
        QueryError,
        DatabaseError,
        DiskFull,
        UnknownRole,
        BatchError,
        ClientError,
        WorkspaceError,
        OSError,
        duckdb.Error,
    )


def one_line(exc: BaseException) -> str:
    """What the CLI prints after ``shoal: error:`` for one of :func:`known_errors`."""
    from shoal.mailbox.errors import RemoteError

    # The orchestrator's disk-full line says it all; other codes keep their prefix.
    full = isinstance(exc, RemoteError) and exc.code == "disk_full"
    text = exc.message if full else str(exc)  # type: ignore[attr-defined]
    return text.strip().split("\n", 1)[0]
