"""The exceptions the CLI turns into one-line errors instead of tracebacks."""

from __future__ import annotations


def known_errors() -> tuple[type[Exception], ...]:
    import duckdb

    from shoal.actors.registry import UnknownRole
    from shoal.batch.units import BatchError
    from shoal.mailbox.errors import MailboxError
    from shoal.orchestrator.daemon import OrchestratorError
    from shoal.paths import HomeError
    from shoal.settings import SettingsError
    from shoal.store.database import DatabaseBusy
    from shoal.store.queries import QueryError
    from shoal.workspace.git import WorkspaceError

    return (
        HomeError,
        SettingsError,
        OrchestratorError,
        MailboxError,
        QueryError,
        DatabaseBusy,
        UnknownRole,
        BatchError,
        WorkspaceError,
        OSError,
        duckdb.Error,
    )
