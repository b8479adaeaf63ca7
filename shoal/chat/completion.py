"""Completion in the chat prompt: slash commands, and ``@file`` paths of the repository."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prompt_toolkit.completion import Completer, Completion

from shoal.chat.mentions import RepoFiles


class ChatCompleter(Completer):
    def __init__(self, commands: dict[str, str], files: RepoFiles) -> None:
        self.commands = commands
        """Slash command -> one-line help."""
        self.files = files

    def get_completions(self, document: Any, complete_event: Any) -> Iterator[Completion]:
        text = document.text_before_cursor
        if text.startswith("/") and " " not in text:
            for name, help_text in self.commands.items():
                if name.startswith(text):
                    yield Completion(name, start_position=-len(text), display_meta=help_text)
            return
        word = text.split()[-1] if text and not text[-1].isspace() else ""
        if word.startswith("@"):
            for path in self.files.matching(word[1:]):
                yield Completion("@" + path, start_position=-len(word), display=path)
