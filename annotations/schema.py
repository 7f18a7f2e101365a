"""The annotation database schema: explicit, named migrations, each run in a transaction and
recorded (sqlite-utils' ``Migrations`` keeps the record in ``_sqlite_migrations``).

History tables (analyses, segments, predicted_segments, corrections) are append-only: triggers
RAISE on any UPDATE or DELETE, so the current state can only ever be derived, never overwritten.
Add a new migration function to change the schema; never edit an applied one.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from annotations.validation import StoreBusyError

MIGRATIONS = Migrations("uprm-annotations")
HISTORY_TABLES = ("analyses", "segments", "predicted_segments", "corrections")

_TABLES = [
    """CREATE TABLE videos (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 255),
        content_hash TEXT UNIQUE,            -- sha256 of the file; NULL for dataset references
        path TEXT NOT NULL DEFAULT '',
        fps REAL NOT NULL CHECK (fps > 0),
        frame_count INTEGER CHECK (frame_count IS NULL OR frame_count >= 0),
        duration_s REAL CHECK (duration_s IS NULL OR duration_s >= 0),
        width INTEGER,
        height INTEGER,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE annotators (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE analyses (
        id INTEGER PRIMARY KEY,
        video_id INTEGER NOT NULL REFERENCES videos(id),
        model_id TEXT NOT NULL,
        model_version TEXT NOT NULL DEFAULT '',
        settings_json TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings_json)),
        created_at TEXT NOT NULL
    )""",
    # Identity of every segment a correction can point at: predictions and human additions.
    """CREATE TABLE segments (
        id INTEGER PRIMARY KEY,
        video_id INTEGER NOT NULL REFERENCES videos(id),
        source TEXT NOT NULL CHECK (source IN ('model', 'human')),
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE predicted_segments (
        segment_id INTEGER PRIMARY KEY REFERENCES segments(id),
        analysis_id INTEGER NOT NULL REFERENCES analyses(id),
        start_frame INTEGER NOT NULL CHECK (start_frame >= 0),
        end_frame INTEGER NOT NULL,
        start_s REAL NOT NULL,
        end_s REAL NOT NULL,
        score REAL,
        category TEXT NOT NULL,
        cause TEXT NOT NULL DEFAULT '',
        CHECK (end_frame > start_frame)
    )""",
    """CREATE TABLE corrections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        video_id INTEGER NOT NULL REFERENCES videos(id),
        segment_id INTEGER REFERENCES segments(id),
        annotator_id INTEGER NOT NULL REFERENCES annotators(id),
        kind TEXT NOT NULL CHECK (kind IN ('accept', 'reject', 'edit_bounds', 'edit_cause',
                                           'edit_category', 'add_segment', 'mark_reviewed')),
        created_at TEXT NOT NULL,
        new_value TEXT NOT NULL CHECK (json_valid(new_value)),
        previous_value TEXT CHECK (previous_value IS NULL OR json_valid(previous_value)),
        CHECK ((kind = 'mark_reviewed') = (segment_id IS NULL))
    )""",
    "CREATE INDEX idx_analyses_video ON analyses(video_id, id)",
    "CREATE INDEX idx_segments_video ON segments(video_id)",
    "CREATE INDEX idx_predicted_analysis ON predicted_segments(analysis_id)",
    "CREATE INDEX idx_corrections_video ON corrections(video_id, id)",
    "CREATE INDEX idx_corrections_segment ON corrections(segment_id, id)",
    "CREATE INDEX idx_corrections_annotator ON corrections(annotator_id, id)",
]


@MIGRATIONS(name="0001_tables")
def _create_tables(db: Database) -> None:
    for statement in _TABLES:
        db.execute(statement)


@MIGRATIONS(name="0002_append_only_history")
def _append_only_triggers(db: Database) -> None:
    for table in HISTORY_TABLES:
        for action in ("UPDATE", "DELETE"):
            message = f"{table} is append-only history: {action} is not allowed, add a correction"
            db.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def connect(path: str | Path, *, busy_timeout_s: float = 30.0, durable: bool = False) -> Database:
    """Open (creating if needed) with WAL, a busy timeout and foreign keys on.

    synchronous=NORMAL by default: in WAL mode a write that returned survives a crashed or killed
    process (tested with SIGKILL) and the file is never corrupted, but the last commits may be
    lost on power failure. ``durable=True`` selects FULL (an fsync per commit: ~6 ms each on our
    shared disk, against ~0.7 ms for the whole write with NORMAL).
    """
    path = str(path)
    in_memory = path == ":memory:"
    if not in_memory:
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            from annotations.validation import AnnotationError

            raise AnnotationError(f"folder {str(parent)!r} for the database does not exist: create it")
    # check_same_thread=False: Gradio calls back from worker threads; Store serialises with a lock
    conn = sqlite3.connect(path, timeout=busy_timeout_s, check_same_thread=False)
    db = Database(conn)
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    db.execute("PRAGMA foreign_keys = ON")
    if not in_memory:
        try:
            with db.ensure_autocommit_on():
                db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            raise StoreBusyError(f"could not switch {path!r} to WAL mode: {exc}") from exc
    db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    return db


def migrate(db: Database) -> list[str]:
    """Apply pending migrations; returns the names applied now. Safe with concurrent openers:
    the check and the migrations run under one write lock (BEGIN IMMEDIATE)."""
    if not MIGRATIONS.pending(db):
        return []
    try:
        db.conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise StoreBusyError(f"database stayed locked while migrating: {exc}") from exc
    try:
        names = [m.name for m in MIGRATIONS.pending(db)]  # re-read under the lock
        MIGRATIONS.apply(db)  # nested in our transaction: each migration becomes a savepoint
    except BaseException:
        db.rollback()
        raise
    db.conn.execute("COMMIT")
    return names


def applied_migrations(db: Database) -> list[tuple[str, str]]:
    """(name, applied_at) of every applied migration, oldest first."""
    return [(m.name, m.applied_at) for m in MIGRATIONS.applied(db)]
