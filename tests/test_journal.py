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


def test_recovery_puts_journaled_messages_into_duckdb_once(tmp_path: Path) -> None:
    from shoal.mailbox.envelope import Envelope
    from shoal.messages.actors import EchoRequest
    from shoal.orchestrator.server import _recover
    from shoal.paths import Home
    from shoal.store.database import open_writer
    from shoal.store.messages import MessageRow
    from shoal.store.messages import insert as insert_messages

    home = Home(tmp_path).ensure()
    envs = [Envelope.of(EchoRequest(seq=i), sender="c", recipient="echo-1") for i in range(5)]
    con = open_writer(home.database)
    insert_messages(con, [MessageRow(envs[0], envs[0].encode(), 1.0, True)])  # flushed before
    journal = Journal(home.journal)
    journal.append([message_record(True, 2.0, e.encode()) for e in envs])
    journal.append([ack_record(3.0, [envs[1].id])])
    journal.close()
    assert _recover(con, home) == 6
    ids = [r[0] for r in con.execute("SELECT id FROM messages ORDER BY id").fetchall()]
    acks = con.execute("SELECT message_id FROM acks").fetchall()
    con.close()
    assert ids == [e.id for e in envs]
    assert acks == [(envs[1].id,)]
    assert home.journal.stat().st_size == 0
