"""The SQLite store's schema: its migrations, in order (a file's ``user_version`` is the last applied)."""

from __future__ import annotations

from .sqlite_open import MARKER_KEY, MARKER_VALUE, Migration

__all__ = ["MIGRATIONS"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, (
        "CREATE TABLE corral_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"INSERT INTO corral_meta (key, value) VALUES ('{MARKER_KEY}', '{MARKER_VALUE}')",
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY, flow_name TEXT NOT NULL, flow TEXT NOT NULL,
            inputs TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, error TEXT,
            outputs TEXT NOT NULL, record TEXT NOT NULL, runtime_id TEXT,
            created_at REAL NOT NULL, updated_at REAL NOT NULL, finished_at REAL,
            next_seq INTEGER NOT NULL, resume_payload TEXT NOT NULL)""",
        "CREATE INDEX jobs_by_created ON jobs (created_at)",
        "CREATE INDEX jobs_by_state ON jobs (state, created_at)",
        "CREATE INDEX jobs_by_runtime ON jobs (runtime_id, created_at)",
        # rows append in rowid order; only the small (job_id, seq) index takes the interleaving
        # of many jobs' writes (a WITHOUT ROWID table rewrote ~2.5x the pages per batch)
        """CREATE TABLE events (
            job_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, ts REAL NOT NULL,
            payload TEXT NOT NULL, UNIQUE (job_id, seq))""",
        """CREATE TABLE checkpoints (
            job_id TEXT NOT NULL, step TEXT NOT NULL, outputs TEXT NOT NULL,
            iteration INTEGER NOT NULL, attempt INTEGER NOT NULL,
            PRIMARY KEY (job_id, step)) WITHOUT ROWID""",
        """CREATE TABLE leases (
            runtime_id TEXT PRIMARY KEY, pid INTEGER NOT NULL, started REAL NOT NULL,
            host TEXT NOT NULL, created_at REAL NOT NULL)""",
        """CREATE TABLE process_groups (
            marker TEXT PRIMARY KEY, runtime_id TEXT NOT NULL, job_id TEXT NOT NULL,
            pgid INTEGER NOT NULL)""",
        "CREATE INDEX process_groups_by_runtime ON process_groups (runtime_id)",
    )),
    Migration(2, (
        # where the runtime serves control requests (its Unix socket), for clients in other processes
        "ALTER TABLE leases ADD COLUMN control TEXT",
    )),
    Migration(3, (
        # 1: the payload is stored without the type, job_id, seq and ts its columns hold (older rows
        # read 0 and keep their whole payload)
        "ALTER TABLE events ADD COLUMN bare INTEGER NOT NULL DEFAULT 0",
    )),
    Migration(4, (
        # each flow once, by its digest: a job's ``flow`` column holds the digest (older rows keep
        # the flow's JSON text, which starts with "{" where a digest never does)
        "CREATE TABLE flows (digest TEXT PRIMARY KEY, flow TEXT NOT NULL) WITHOUT ROWID",
    )),
)
"""Schema migrations in order; append ``Migration(n + 1, ...)`` to evolve the schema."""
