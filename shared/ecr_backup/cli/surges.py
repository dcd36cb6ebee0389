"""`ecr-backup surges`: list deletion surges; `surges acknowledge` releases one to retention."""

from __future__ import annotations

import argparse
from typing import Any

from ecr_backup.catalog.surges import Surge, SurgeBook, acknowledge
from ecr_backup.cli.common import add_storage_options, emit, services_from, table
from ecr_backup.model import rfc3339
from ecr_backup.registry.ecr import caller_arn
from ecr_backup.text import counted


def register(commands: Any) -> None:
    surges = commands.add_parser(
        "surges",
        help="list deletion surges (mass deletions held from retention)",
        description="List the deletion surges the backup recorded: deletions of many images "
        "within an hour. Retention keeps every image deleted in an unacknowledged surge; "
        "`surges acknowledge ID --reason TEXT` says the deletions were meant.",
    )
    add_storage_options(surges)
    surges.set_defaults(run=run_list)
    actions = surges.add_subparsers(dest="surges_action", metavar="acknowledge")
    ack = actions.add_parser(
        "acknowledge",
        help="release a surge's deletions to retention (recorded in the bucket for audit)",
        description="Record, for good, that a surge's deletions were meant: an immutable "
        "record in the bucket naming you and the reason. Prune may then remove the deleted "
        "images after KeepDeletedDays. The stack's function roles cannot write it: run it "
        "with operator credentials.",
    )
    ack.add_argument("surge_id", metavar="ID", help="the surge, as `ecr-backup surges` lists it")
    ack.add_argument("--reason", required=True, help="why the deletions were meant")
    add_storage_options(ack)
    ack.set_defaults(run=run_acknowledge)


def _row(surge: Surge, book: SurgeBook) -> list[str]:
    ack = book.acknowledgements.get(surge.id)
    state = f"acknowledged {rfc3339(ack.time)} by {ack.by}: {ack.reason}" if ack else "HOLDING"
    where = surge.repository or "(every repository)"
    span = f"{rfc3339(surge.start)}..{rfc3339(surge.end)}"
    return [surge.id, surge.account, where, span, str(surge.deletions), state]


def _document(book: SurgeBook) -> dict[str, object]:
    return {
        "surges": [
            {
                "id": s.id,
                "account": s.account,
                "repository": s.repository,
                "start": s.start,
                "end": s.end,
                "deletions": s.deletions,
                "rule": s.rule,
                "detected_at": s.detected_at,
                "acknowledged": _ack(book, s.id),
            }
            for s in book.surges
        ],
        "holding": len(book.unacknowledged()),
        "unreadable": book.unreadable,
    }


def _ack(book: SurgeBook, surge_id: str) -> dict[str, object] | None:
    ack = book.acknowledgements.get(surge_id)
    if ack is None:
        return None
    return {"by": ack.by, "reason": ack.reason, "time": ack.time}


def run_list(args: argparse.Namespace) -> int:
    services = services_from(args)
    book = services.surges()
    rows = [_row(s, book) for s in book.surges]
    headers = ["ID", "ACCOUNT", "REPOSITORY", "WINDOW", "DELETIONS", "STATE"]
    holding = len(book.unacknowledged())
    lines = table(rows, headers) if rows else []
    lines.append(
        f"{counted(len(book.surges), 'surge')}, {holding} holding deleted images from retention"
        if book.surges
        else "no deletion surge recorded"
    )
    lines.extend(f"unreadable surge record: {u}" for u in book.unreadable)
    emit(args, _document(book), lines)
    # Unreadable records may be surges: like a holding one, they need a person to look.
    return 1 if book.unreadable else 0


def run_acknowledge(args: argparse.Namespace) -> int:
    services = services_from(args)
    by = caller_arn(services.session)
    ack = acknowledge(services.store, args.surge_id, args.reason, by, services.clock())
    document = {"id": ack.surge_id, "by": ack.by, "reason": ack.reason, "time": ack.time}
    emit(args, document, [f"acknowledged surge {ack.surge_id} ({ack.reason}), as {ack.by}"])
    return 0
