"""Versioned schema migrations. Append to MIGRATIONS; never edit a released one."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "messages, acks and actor events",
        """
        CREATE TABLE messages (
            id          VARCHAR NOT NULL,   -- envelope id (sortable ULID)
            kind        VARCHAR NOT NULL,
            sender      VARCHAR NOT NULL,
            recipient   VARCHAR NOT NULL,
            task_id     VARCHAR,
            reply_to    VARCHAR,
            attempt     INTEGER NOT NULL,
            sent_at     TIMESTAMP NOT NULL, -- UTC
            recorded_at TIMESTAMP NOT NULL, -- UTC, when the broker received it
            tracked     BOOLEAN NOT NULL,   -- kept until acked, redelivered if lost
            body        JSON NOT NULL       -- the whole envelope as it travelled
        );
        CREATE TABLE acks (
            message_id VARCHAR NOT NULL,
            acked_at   TIMESTAMP NOT NULL
        );
        CREATE TABLE actor_events (
            happened_at TIMESTAMP NOT NULL,
            name   VARCHAR NOT NULL,
            role   VARCHAR NOT NULL,
            pid    INTEGER,
            event  VARCHAR NOT NULL,       -- started, exited, restarting, adopted, stopped
            detail VARCHAR
        );
        """,
    ),
]

MIGRATIONS.append(
    (
        2,
        "tasks, iterations, findings and usage",
        """
        CREATE TABLE tasks (
            id            VARCHAR PRIMARY KEY,
            description   VARCHAR NOT NULL,
            cwd           VARCHAR NOT NULL,
            options       JSON NOT NULL,
            requester     VARCHAR,
            status        VARCHAR NOT NULL,  -- running, accepted, unaccepted, failed, cancelled
            phase         VARCHAR NOT NULL,  -- planning, executing, evaluating, restoring, done
            decision      VARCHAR,
            score         DOUBLE,
            best_iteration INTEGER,
            iterations    INTEGER NOT NULL,
            tokens        BIGINT NOT NULL,
            cost_usd      DOUBLE NOT NULL,
            plan          JSON,
            base          VARCHAR,           -- snapshot before iteration 1
            files_changed JSON,
            summary       VARCHAR,
            created_at    TIMESTAMP NOT NULL,
            updated_at    TIMESTAMP NOT NULL,
            finished_at   TIMESTAMP
        );
        CREATE TABLE iterations (
            task_id     VARCHAR NOT NULL,
            n           INTEGER NOT NULL,
            score       DOUBLE,
            judge_score DOUBLE,
            dimensions  JSON,
            checks      JSON,
            snapshot    VARCHAR,
            summary     VARCHAR,
            tool_calls  INTEGER,
            tokens      BIGINT NOT NULL,
            cost_usd    DOUBLE NOT NULL,
            duration_s  DOUBLE,
            decision    VARCHAR,
            finished_at TIMESTAMP NOT NULL,
            PRIMARY KEY (task_id, n)
        );
        CREATE TABLE findings (
            task_id   VARCHAR NOT NULL,
            iteration INTEGER NOT NULL,
            severity  VARCHAR NOT NULL,
            title     VARCHAR NOT NULL,
            detail    VARCHAR,
            fix       VARCHAR
        );
        CREATE TABLE usage_events (
            happened_at       TIMESTAMP NOT NULL,
            task_id           VARCHAR,
            role              VARCHAR NOT NULL,
            model             VARCHAR,
            calls             INTEGER NOT NULL,
            prompt_tokens     BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            cost_usd          DOUBLE NOT NULL
        );
        """,
    )
)

MIGRATIONS.append(
    (
        3,
        "learnings, skills used per task, skill effectiveness, patterns",
        """
        CREATE TABLE learnings (
            id           VARCHAR PRIMARY KEY,
            kind         VARCHAR NOT NULL,   -- regression, plateau, blocker, budget, insight, ...
            content      VARCHAR NOT NULL,
            confidence   DOUBLE NOT NULL,    -- stored base confidence; decay is computed on read
            uses         INTEGER NOT NULL,
            source_task  VARCHAR,
            created_at   TIMESTAMP NOT NULL,
            last_used_at TIMESTAMP NOT NULL,
            embedding    FLOAT[256] NOT NULL,
            embedder     VARCHAR NOT NULL,
            forgotten    BOOLEAN NOT NULL DEFAULT false
        );
        CREATE TABLE task_skills (
            task_id VARCHAR NOT NULL,
            skill   VARCHAR NOT NULL,
            PRIMARY KEY (task_id, skill)
        );
        CREATE TABLE skill_effectiveness (
            skill      VARCHAR PRIMARY KEY,
            samples    INTEGER NOT NULL,
            mean_score DOUBLE NOT NULL,
            updated_at TIMESTAMP NOT NULL
        );
        CREATE TABLE patterns (
            id          VARCHAR PRIMARY KEY,
            kind        VARCHAR NOT NULL,    -- task_cluster, tool_sequence, finding
            summary     VARCHAR NOT NULL,
            samples     INTEGER NOT NULL,
            confidence  DOUBLE NOT NULL,
            task_ids    JSON,
            proposal    VARCHAR,             -- name of the SKILL.md drafted from it, if any
            status      VARCHAR NOT NULL,    -- new, proposed, approved, dismissed
            updated_at  TIMESTAMP NOT NULL
        );
        """,
    )
)

MIGRATIONS.append(
    (
        4,
        "teams: task lists with claims, a task's parent and subtasks, team memory",
        """
        ALTER TABLE tasks ADD COLUMN parent VARCHAR;
        ALTER TABLE tasks ADD COLUMN subtasks JSON;
        ALTER TABLE learnings ADD COLUMN team VARCHAR;
        CREATE TABLE team_tasks (
            list_id    VARCHAR NOT NULL,     -- a team run's task id, or a team's name
            id         VARCHAR NOT NULL,
            title      VARCHAR NOT NULL,
            detail     VARCHAR,
            files      JSON,
            depends_on JSON,
            status     VARCHAR NOT NULL,     -- pending, claimed, running, accepted, ...
            owner      VARCHAR,
            task_id    VARCHAR,
            score      DOUBLE,
            branch     VARCHAR,
            note       VARCHAR,
            updated_at TIMESTAMP NOT NULL,
            PRIMARY KEY (list_id, id)
        );
        """,
    )
)

MIGRATIONS.append(
    (
        5,
        "chat sessions and their transcripts",
        """
        CREATE TABLE sessions (
            id              VARCHAR PRIMARY KEY,
            name            VARCHAR UNIQUE,     -- from shoal chat -s NAME; NULL when unnamed
            cwd             VARCHAR NOT NULL,
            model           VARCHAR,
            permission_mode VARCHAR,
            title           VARCHAR,            -- the first user message, shortened
            turns           INTEGER NOT NULL,
            tokens          BIGINT NOT NULL,
            cost_usd        DOUBLE NOT NULL,
            created_at      TIMESTAMP NOT NULL,
            updated_at      TIMESTAMP NOT NULL
        );
        CREATE TABLE session_messages (
            session_id   VARCHAR NOT NULL,
            seq          INTEGER NOT NULL,
            turn         INTEGER NOT NULL,
            role         VARCHAR NOT NULL,      -- user, assistant, tool, summary, clear
            content      VARCHAR,
            tool_calls   JSON,
            tool_call_id VARCHAR,
            meta         JSON,                  -- files attached, what a summary covers, ...
            created_at   TIMESTAMP NOT NULL,
            PRIMARY KEY (session_id, seq)
        );
        """,
    )
)

MIGRATIONS.append(
    (
        6,
        "webhook deliveries",
        """
        CREATE TABLE webhook_deliveries (
            delivery_id  VARCHAR NOT NULL,   -- X-Shoal-Delivery: one event to one webhook
            attempt      INTEGER NOT NULL,
            event        VARCHAR NOT NULL,   -- task.complete, task.failed, budget.warning
            task_id      VARCHAR,
            webhook      VARCHAR NOT NULL,   -- the webhook's name (default: its host)
            target       VARCHAR NOT NULL,   -- scheme://host:port only: paths may hold secrets
            status_code  INTEGER,            -- HTTP status, NULL when no answer came
            ok           BOOLEAN NOT NULL,
            error        VARCHAR,
            duration_ms  DOUBLE NOT NULL,
            attempted_at TIMESTAMP NOT NULL, -- UTC
            retry_at     TIMESTAMP,          -- UTC, when the next attempt is due (NULL: none)
            PRIMARY KEY (delivery_id, attempt)
        );
        """,
    )
)

MIGRATIONS.append(
    (
        8,
        "scrollback of team members' tmux panes",
        """
        CREATE TABLE pane_transcripts (
            captured_at TIMESTAMP NOT NULL,   -- UTC, when the pane ended
            team        VARCHAR NOT NULL,
            member      VARCHAR NOT NULL,     -- actor name, e.g. executor@red-1
            role        VARCHAR NOT NULL,
            pane_id     VARCHAR NOT NULL,     -- tmux's %id
            reason      VARCHAR NOT NULL,     -- stopped (team down, retired) or restarted
            lines       INTEGER NOT NULL,
            text        VARCHAR NOT NULL      -- capture-pane -p -J -S -
        );
        """,
    )
)

MIGRATIONS.append(
    (
        7,
        "batch refactors: batches and their units",
        """
        CREATE TABLE batches (
            id          VARCHAR PRIMARY KEY,
            instruction VARCHAR NOT NULL,
            spec        JSON NOT NULL,      -- how it was asked for: sources, unit, verify, models
            status      VARCHAR NOT NULL,   -- running, interrupted, done
            units       INTEGER NOT NULL,
            backend     VARCHAR NOT NULL,   -- ray, local
            applied     JSON,               -- branch per repository, when patches were applied
            created_at  TIMESTAMP NOT NULL,
            updated_at  TIMESTAMP NOT NULL,
            finished_at TIMESTAMP
        );
        CREATE TABLE batch_units (
            batch_id      VARCHAR NOT NULL,
            unit_id       VARCHAR NOT NULL,
            name          VARCHAR NOT NULL,  -- the file, directory or repository
            source        VARCHAR NOT NULL,  -- repository path or URL
            files         JSON NOT NULL,
            status        VARCHAR NOT NULL,  -- pending, accepted, rejected, failed, lost
            attempts      INTEGER NOT NULL,  -- runs started (a worker that died counts)
            score         DOUBLE,
            verify_passed BOOLEAN,
            diff          VARCHAR,
            files_changed JSON,
            tokens        BIGINT NOT NULL,
            cost_usd      DOUBLE NOT NULL,
            duration_s    DOUBLE,
            summary       VARCHAR,
            error         VARCHAR,
            worker        VARCHAR,           -- host:pid that ran the last attempt
            finished_at   TIMESTAMP,
            PRIMARY KEY (batch_id, unit_id)
        );
        """,
    )
)

MIGRATIONS.append(
    (
        9,
        "the public views users query (shoal sql): schema records",
        # A public interface (README, "Your records as data"): a later migration that changes
        # a table these read must CREATE OR REPLACE the views it breaks, same columns.
        # Tables are named main.* here: a view named like its table would read itself.
        """
        CREATE SCHEMA records;
        CREATE VIEW records.tasks AS
        SELECT t.id AS task_id,
               t.parent AS parent_id,
               t.options->>'replay_of' AS replay_of,
               CASE WHEN t.parent IS NOT NULL AND (t.options->>'evaluate') = 'false'
                        THEN 'subagent'
                    WHEN t.parent IS NOT NULL THEN 'subtask'
                    WHEN (t.options->>'replay_of') IS NOT NULL THEN 'replay'
                    ELSE 'task' END AS kind,
               t.description,
               t.cwd,
               coalesce(o.cwd, t.cwd) AS repo,
               t.status,
               t.decision,
               t.score,
               t.best_iteration,
               t.iterations,
               t.tokens,
               t.cost_usd,
               coalesce(t.options->'models'->'planner'->>'model',
                        t.options->'models'->'default'->>'model') AS planner_model,
               coalesce(t.options->'models'->'executor'->>'model',
                        t.options->'models'->'default'->>'model') AS executor_model,
               coalesce(t.options->'models'->'evaluator'->>'model',
                        t.options->'models'->'default'->>'model') AS evaluator_model,
               t.options->>'permission_mode' AS permission_mode,
               t.created_at,
               t.finished_at,
               epoch(t.finished_at) - epoch(t.created_at) AS duration_s,
               t.files_changed,
               t.summary
        FROM main.tasks t LEFT JOIN main.tasks o ON o.id = t.options->>'replay_of';
        CREATE VIEW records.iterations AS
        SELECT task_id, n AS iteration, score, judge_score, decision, tool_calls, tokens,
               cost_usd, duration_s, dimensions, checks, snapshot, summary, finished_at
        FROM main.iterations;
        CREATE VIEW records.tool_calls AS
        SELECT id AS message_id,
               task_id,
               CAST(body->'payload'->>'iteration' AS INTEGER) AS iteration,
               body->'payload'->>'name' AS name,
               body->'payload'->>'detail' AS detail,
               coalesce(CAST(body->'payload'->>'ok' AS BOOLEAN), true) AS ok,
               recorded_at
        FROM main.messages
        WHERE kind = 'exec.event' AND (body->'payload'->>'type') = 'tool_call';
        CREATE VIEW records.findings AS
        SELECT task_id, iteration, severity, title, detail, fix FROM main.findings;
        CREATE VIEW records.costs AS
        SELECT happened_at AS recorded_at, task_id, role, model, calls, prompt_tokens,
               completion_tokens, prompt_tokens + completion_tokens AS tokens, cost_usd
        FROM main.usage_events;
        CREATE VIEW records.learnings AS
        SELECT id AS learning_id, kind, content, confidence, uses, source_task, team,
               created_at, last_used_at, forgotten
        FROM main.learnings;
        CREATE VIEW records.messages AS
        SELECT id AS message_id, kind, sender, recipient, task_id, reply_to, attempt, sent_at,
               recorded_at, body->'payload' AS payload
        FROM main.messages;
        """,
    )
)

# Migrations are appended by number, not necessarily in list order (branches merge).
LATEST = max(number for number, _, _ in MIGRATIONS)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    # fetchall, never fetchone: DuckDB refuses other work on a connection while a
    # result is only partly read.
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchall()
    if not exists[0][0]:
        return 0
    rows = con.execute("SELECT max(version) FROM schema_version").fetchall()
    return int(rows[0][0] or 0)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every migration the file has not had yet, in order, each in one transaction."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER NOT NULL, description VARCHAR, applied_at TIMESTAMP NOT NULL)"
    )
    version = current_version(con)
    applied = {row[0] for row in con.execute("SELECT version FROM schema_version").fetchall()}
    # By number, and by what is applied rather than the highest number: a file migrated by
    # a branch with migration 5 still gets a 4 merged in later.
    for number, description, sql in sorted(MIGRATIONS):
        if number in applied:
            continue
        con.execute("BEGIN")
        try:
            con.execute(sql)
            con.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)",
                [number, description, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        version = max(version, number)
    return version
