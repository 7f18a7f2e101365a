"""`python -m annotations COMMAND ...`: thin wrappers over the store and formats, one per command.

Each command maps onto one library call and its help ends with an example. Bad input exits with
status 2 and a one-line message instead of a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from annotations.validation import AnnotationError, StoreBusyError

PROG = "python -m annotations"


def _open(args: argparse.Namespace, *, create: bool):
    from annotations.categories import DEFAULT_CATEGORIES, read_category_file
    from annotations.store import Store

    if not create and args.db != ":memory:" and not Path(args.db).is_file():
        raise AnnotationError(
            f"no annotation database at {args.db!r}: create one with `{PROG} init --db {args.db}` "
            "or by importing a file"
        )
    categories = read_category_file(args.categories) if args.categories else DEFAULT_CATEGORIES
    return Store(args.db, categories=categories)


def _video_ids(store, refs: list[str] | None) -> list[int] | None:
    return None if not refs else [store.find_video(r) for r in refs]


def _print_json(obj) -> None:
    def default(o):
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)
        return str(o)

    print(json.dumps(obj, indent=1, default=default, ensure_ascii=False))


def cmd_init(args: argparse.Namespace) -> int:
    from annotations import schema

    with _open(args, create=True) as store:
        for name, applied_at in schema.applied_migrations(store.db):
            mark = "applied now" if name in store.migrations_applied else "already applied"
            print(f"{name}  {applied_at}  ({mark})")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from annotations.formats import import_file

    with _open(args, create=True) as store:
        report = import_file(store, args.format, args.input, annotator=args.annotator, fps=args.fps)
    print(f"imported {report.segments_added} segment(s) from {report.videos} video(s) "
          f"({report.videos_created} new video(s), {report.segments_skipped} already present) "
          f"as annotator {args.annotator!r}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from annotations.formats import export

    with _open(args, create=False) as store:
        result = export(store, args.format, args.out, _video_ids(store, args.video), name=args.name,
                        annotator=args.annotator, reviewed_only=not args.include_unreviewed,
                        per_video=args.per_video)
    for path in result.paths:
        print(path)
    print(f"exported {result.segments} segment(s) of {result.videos} video(s)", file=sys.stderr)
    if result.skipped_unreviewed:
        print(f"left out {len(result.skipped_unreviewed)} video(s) whose review is unfinished "
              f"(--include-unreviewed to export them): {', '.join(result.skipped_unreviewed[:10])}",
              file=sys.stderr)
    return 0


def _as_of(text: str | None):
    if text is None:
        return None
    return int(text) if text.strip().isdigit() else text


def cmd_segments(args: argparse.Namespace) -> int:
    with _open(args, create=False) as store:
        vid = store.find_video(args.video)
        segments = store.current_segments(vid, args.annotator, _as_of(args.as_of))
    if args.json:
        _print_json(segments)
        return 0
    for s in segments:
        print(f"#{s.id:<6} {s.start_s:9.3f}-{s.end_s:9.3f} s  frames {s.start_frame}-{s.end_frame}  "
              f"{s.status:<8} {s.source:<5} {s.label:<14} {s.cause[:60]}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _open(args, create=False) as store:
        corrections = store.history(store.find_video(args.video), args.annotator)
    if args.json:
        _print_json(corrections)
        return 0
    for c in corrections:
        print(f"#{c.id:<6} {c.created_at}  {c.annotator:<16} {c.kind:<14} segment {c.segment_id}  "
              f"{json.dumps(c.previous_value)} -> {json.dumps(c.new_value)}")
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    with _open(args, create=False) as store:
        queue = store.review_queue(args.annotator)
    if args.json:
        _print_json(queue)
        return 0
    for status in ("in_progress", "unreviewed", "reviewed"):
        items = getattr(queue, status)
        print(f"{status} ({len(items)})")
        for p in items:
            print(f"  {p.video_id:<6} {p.name:<40} pending {p.pending:<4} accepted {p.accepted:<4} "
                  f"rejected {p.rejected:<4} by {', '.join(p.annotators) or '-'}")
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    with _open(args, create=False) as store:
        rows = store.annotator_progress() if args.by_annotator else store.progress()
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        if args.by_annotator:
            print(f"{r.annotator:<20} corrections {r.corrections:<6} videos touched {r.videos_touched:<5} "
                  f"reviewed {r.videos_reviewed:<5} last {r.last_activity or '-'}")
        else:
            print(f"{r.video_id:<6} {r.name:<40} {r.status:<12} segments {r.segments:<4} "
                  f"pending {r.pending:<4} corrections {r.corrections}")
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    with _open(args, create=False) as store:
        result = store.disagreement(store.find_video(args.video), args.a, args.b, args.tiou)
    _print_json(result)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, help="annotation database file (SQLite)")
    p.add_argument("--categories", metavar="FILE",
                   help="allowed categories, one per line (CUVA Category.txt style understood); "
                        "default: 'threat' + UCF-Crime's 13 + CUVA's 11 classes")


def build_parser() -> argparse.ArgumentParser:
    from annotations.formats import FORMATS, IMPORT_FORMATS

    parser = argparse.ArgumentParser(
        prog=PROG, description="UPRM Studio annotation store: import, export and review progress.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, example: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=f"example:\n  {PROG} {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p)
        p.set_defaults(func=func)
        return p

    command("init", "Create the database or apply pending schema migrations.",
            "init --db annotations.db", cmd_init)

    p = command("import", "Import annotations as corrections by one annotator (all or nothing).",
                "import --db annotations.db --format ucf_crime "
                "--in ../shared/data/ucf_crime/Temporal_Anomaly_Annotation.txt", cmd_import)
    p.add_argument("--format", required=True, choices=IMPORT_FORMATS)
    p.add_argument("--in", dest="input", required=True, help="file to import")
    p.add_argument("--annotator", default="import", help="name recorded on the corrections")
    p.add_argument("--fps", type=float, help="frame rate for videos the store lacks when the file "
                                             "gives none (required for Label Studio tasks without data.fps)")

    p = command("export", "Export reviewed segments; files are written atomically into --out.",
                "export --db annotations.db --format llava --out exports/ --video vtest", cmd_export)
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="export folder (created if missing)")
    p.add_argument("--video", nargs="+", metavar="ID", help="video names or ids (default: all)")
    p.add_argument("--annotator", help="export this annotator's view (default: merged)")
    p.add_argument("--name", help="file name stem (sanitised; default annotations_<format>)")
    p.add_argument("--per-video", action="store_true", help="one file per video, named after it")
    p.add_argument("--include-unreviewed", action="store_true",
                   help="also export videos whose review is unfinished (their accepted segments only)")

    p = command("segments", "Show a video's segments as derived from its history.",
                "segments --db annotations.db --video vtest --as-of 12", cmd_segments)
    p.add_argument("--video", required=True, help="video name or id")
    p.add_argument("--annotator", help="one annotator's view (default: merged)")
    p.add_argument("--as-of", help="a correction id, or an ISO-8601 time such as 2025-01-31T14:05:00Z")
    p.add_argument("--json", action="store_true")

    p = command("history", "List a video's corrections, oldest first.",
                "history --db annotations.db --video vtest --annotator alice", cmd_history)
    p.add_argument("--video", required=True, help="video name or id")
    p.add_argument("--annotator")
    p.add_argument("--json", action="store_true")

    p = command("queue", "Videos by review status: in progress, unreviewed, reviewed.",
                "queue --db annotations.db", cmd_queue)
    p.add_argument("--annotator", help="status in this annotator's own view")
    p.add_argument("--json", action="store_true")

    p = command("progress", "Review progress per video, or per annotator.",
                "progress --db annotations.db --by-annotator", cmd_progress)
    p.add_argument("--by-annotator", action="store_true")
    p.add_argument("--json", action="store_true")

    p = command("agreement", "tIoU-based agreement between two annotators on one video.",
                "agreement --db annotations.db --video vtest --a alice --b bob", cmd_agreement)
    p.add_argument("--video", required=True, help="video name or id")
    p.add_argument("--a", required=True, help="first annotator")
    p.add_argument("--b", required=True, help="second annotator")
    p.add_argument("--tiou", type=float, default=0.5, help="tIoU needed to match two segments")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (AnnotationError, StoreBusyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
