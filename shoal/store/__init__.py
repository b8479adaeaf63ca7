"""The DuckDB file: schema migrations, the write-ahead journal and named read queries.

Only the orchestrator opens the database for writing (DESIGN.md §1); everyone
else asks it, or opens the file read-only when no orchestrator runs.
"""
