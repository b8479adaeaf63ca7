"""The write-ahead journal: what is appended comes back, a torn tail is ignored."""

from __future__ import annotations

from pathlib import Path

from shoal.store.journal import Journal, ack_record, message_record


def test_replay_returns_messages_and_acks_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.wal")
    journal.append([message_record(True, 1.5, b'{"a":1}'), message_record(False, 2.5, b"{}")])
    journal.append([ack_record(3.0, ["m1", "m2"])])
    journal.close()
    replayed = Journal.replay(tmp_path / "j.wal")
    assert replayed.messages == [(True, 1.5, b'{"a":1}'), (False, 2.5, b"{}")]
    assert replayed.acks == [(3.0, "m1"), (3.0, "m2")]


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j.wal"
    journal = Journal(path)
    journal.append([message_record(True, 1.0, b"{}"), message_record(True, 2.0, b'{"x":2}')])
    journal.close()
    path.write_bytes(path.read_bytes()[:-3])
    assert [m[1] for m in Journal.replay(path).messages] == [1.0]


def test_truncate_empties_the_file_and_it_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "j.wal"
    journal = Journal(path)
    journal.append([message_record(True, 1.0, b"{}")])
    assert (path.stat().st_mode & 0o777) == 0o600
    journal.truncate()
    assert path.stat().st_size == 0 and journal.size == 0
    journal.close()
