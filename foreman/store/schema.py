"""The SQLite schema as an ordered list of migrations (PRAGMA user_version).

Migration N brings a database from version N-1 to N. Never edit a shipped
migration: append a new one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: jobs, their artifacts, and the event outbox.
    """
    CREATE TABLE jobs (
        seq           INTEGER PRIMARY KEY,   -- arrival order; ULIDs are not monotonic within a millisecond
        id            TEXT NOT NULL UNIQUE,  -- the ULID clients see
        state         TEXT NOT NULL,
        model         TEXT NOT NULL,         -- canonical name:tag, lower case (drain-by-model key)
        model_name    TEXT NOT NULL,         -- the model as the client spelled it
        endpoint      TEXT NOT NULL,         -- target path, e.g. /api/chat
        kind          TEXT NOT NULL,         -- generate | load | unload
        sync          INTEGER NOT NULL,      -- 1: an HTTP caller waits on it; 0: submitted through /jobs
        stream        INTEGER NOT NULL,      -- the caller asked for a stream
        body          BLOB NOT NULL,         -- request bytes, forwarded unchanged
        webhook_url   TEXT,
        idempotency_key TEXT,
        attempt       INTEGER NOT NULL DEFAULT 1,
        not_before    REAL NOT NULL DEFAULT 0,  -- re-queue backoff: not picked before this time
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL,
        started_at    REAL,
        finished_at   REAL,
        status        INTEGER,              -- the target's HTTP status, once known
        error         TEXT,
        swapped       INTEGER,              -- running it made the target load the model
        load_duration INTEGER,              -- the target's load_duration (ns)
        eval_count    INTEGER
    );
    -- Picking the next job reads only queued rows, in arrival order, overall or for one model.
    CREATE INDEX jobs_queued ON jobs(seq) WHERE state = 'queued';
    CREATE INDEX jobs_queued_model ON jobs(model, seq) WHERE state = 'queued';
    CREATE UNIQUE INDEX jobs_idempotency_key ON jobs(idempotency_key) WHERE idempotency_key IS NOT NULL;
    -- The TTL sweep reads finished jobs oldest first.
    CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL;

    CREATE TABLE artifacts (
        job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        content_type TEXT NOT NULL,
        data         BLOB NOT NULL,
        PRIMARY KEY (job_id, name)
    ) WITHOUT ROWID;

    CREATE TABLE events (
        seq             INTEGER PRIMARY KEY,  -- delivery order
        id              TEXT NOT NULL,        -- event_id (a ULID), also the webhook-id header
        job_id          TEXT NOT NULL,
        state           TEXT NOT NULL,
        previous_state  TEXT,
        payload         BLOB NOT NULL,        -- the JSON body a webhook receives
        created_at      REAL NOT NULL,
        webhook_url     TEXT,                 -- NULL: recorded, nothing to deliver
        delivered_at    REAL,
        given_up_at     REAL,                 -- attempts used up, or the receiver said 410 Gone
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        last_error      TEXT
    );
    CREATE INDEX events_job ON events(job_id, seq);
    CREATE INDEX events_due ON events(job_id, seq)
        WHERE webhook_url IS NOT NULL AND delivered_at IS NULL AND given_up_at IS NULL;
    """,
    # 2: the digest of the body an Idempotency-Key was first sent with: the same key with another
    # body is refused (422). Keys stored before have none, and keep returning their job.
    """
    ALTER TABLE jobs ADD COLUMN body_sha256 TEXT;
    """,
    # 3: drain by runner (docs/adr/0029), and what each job cost.
    """
    ALTER TABLE jobs ADD COLUMN runner TEXT NOT NULL DEFAULT '';  -- model plus runner options
    UPDATE jobs SET runner = model WHERE runner = '';
    ALTER TABLE jobs ADD COLUMN working_at REAL;
    ALTER TABLE jobs ADD COLUMN swap_reason TEXT;     -- model | options | evicted
    ALTER TABLE jobs ADD COLUMN swap_from TEXT;       -- the runner before the swap
    ALTER TABLE jobs ADD COLUMN ran_after INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN jumped INTEGER NOT NULL DEFAULT 0;  -- max_wait sent it ahead
    ALTER TABLE jobs ADD COLUMN eval_duration INTEGER;
    CREATE INDEX jobs_queued_runner ON jobs(runner, seq) WHERE state = 'queued';
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
