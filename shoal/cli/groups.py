"""Command groups whose default command is ``run``: ``shoal "x"``, ``shoal batch "x"``."""

from __future__ import annotations

from typer.core import TyperGroup


class RunByDefault(TyperGroup):
    """A first argument that names no command (nor an option) is the ``run`` command's.

    ``shoal "fix the failing test"`` means ``shoal run "fix the failing test"``, and
    ``shoal batch "rename foo" --files ...`` means ``shoal batch run "rename foo" ...``.
    """

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)
