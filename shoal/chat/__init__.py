"""Interactive chat: sessions and their transcripts, the conversation a turn sends, the REPL."""
