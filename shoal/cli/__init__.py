"""The ``shoal`` command. Each module holds one command group; heavy imports stay inside commands."""
