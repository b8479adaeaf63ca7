"""Command groups whose default command is ``run``: ``shoal "x"``, ``shoal batch "x"``."""

from __future__ import annotations

from typer.core import TyperGroup


class RunByDefault(TyperGroup):
    """A first argument that names no command (nor an option) is the ``run`` command's.

    ``shoal "fix the failing test"`` means ``shoal run "fix the failing test"``, and
    ``shoal batch "rename foo" --files ...`` means ``shoal batch run "rename foo" ...``.
    """

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        # ``shoal -C repo "fix it"``: an option of ``run``'s before the task (the group's
        # own, like --help and --version, stay the group's).
        if args and args[0].startswith("-") and args[0].split("=")[0] not in self._own(ctx):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)

    def _own(self, ctx) -> set[str]:  # type: ignore[no-untyped-def]
        names = set(ctx.help_option_names)
        for param in self.get_params(ctx):
            names.update(getattr(param, "opts", ()))
            names.update(getattr(param, "secondary_opts", ()))
        return names
