"""`restore --all-repositories`: the disaster-recovery restore of every kept repository.

Each repository's tags (as of --at) go to the same repository name in the new registry.
A repository that fails is reported and the others still go: re-running the command
afterwards copies only what is missing (blobs and manifests already there are skipped,
tags already in place are left alone).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ecr_backup.cli.common import emit, human_size
from ecr_backup.cli.restore_session import Prepared, RestoreSession
from ecr_backup.errors import EcrBackupError, ExitCode, InvalidInputError
from ecr_backup.model import Action
from ecr_backup.oci.reference import ImageRef
from ecr_backup.restore.target import parse_target
from ecr_backup.text import counted


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("disaster recovery: every repository at once")
    group.add_argument(
        "--all-repositories",
        action="store_true",
        help="restore every repository in the backup (all its tags) into --to-registry",
    )
    group.add_argument(
        "--repository-prefix", metavar="P", help="only repositories whose name starts with P"
    )
    group.add_argument(
        "--to-registry",
        metavar="[http(s)://]HOST[:PORT]",
        help="the registry to restore into; each repository keeps its name",
    )


def run_all(args: argparse.Namespace, session: RestoreSession) -> int:
    if args.image or args.to or args.all_tags:
        raise InvalidInputError(
            "--all-repositories takes no IMAGE, --to or --all-tags: it restores every tag "
            "of every repository into --to-registry"
        )
    if not args.to_registry:
        raise InvalidInputError("--all-repositories needs --to-registry HOST")
    registry = args.to_registry.rstrip("/")
    repositories = [
        r for r in session.catalog.repositories() if r.startswith(args.repository_prefix or "")
    ]
    started = time.monotonic()
    # Every repository is planned and its tags read before any is pushed: a tag that
    # would move anywhere stops the whole restore while nothing has changed.
    outcomes = [_prepare(args, session, registry, r) for r in repositories]
    moves = [m for _, prepared, _ in outcomes if prepared for m in prepared.tags.moved]
    failed = tuple(f"failed {r['repository']}: {r['error']}" for r, _, code in outcomes if code)
    session.refuse_moves(moves, failed)
    finished = [_push(args, session, *outcome) for outcome in outcomes]
    results = [result for result, _ in finished]
    failures = [code for _, code in finished if code is not None]
    moved = [m for r in results for m in r["tags_moved"]]
    document = {
        "registry": registry,
        "at": session.at,
        "dry_run": args.dry_run,
        "repositories": results,
        "restored": sum(r["action"] in ("restored", "would restore") for r in results),
        "failed": len(failures),
        "tags": sum(len(r["tags"]) for r in results),
        "tags_moved": moved,
        "tag_counts": {
            kind: sum(r["tag_counts"][kind] for r in results)
            for kind in ("created", "unchanged", "moved")
        },
        "bytes_uploaded": sum(r["bytes_uploaded"] for r in results),
        "seconds": round(time.monotonic() - started, 3),
    }
    emit(args, document, _summary(document), summary=not failures)
    verdict = session.dry_run_verdict(moves)
    # The worst failure decides: a data error (5) outranks an unreachable registry (4).
    return max([*failures, verdict], default=ExitCode.OK)


Outcome = tuple[dict[str, Any], "Prepared | None", ExitCode | None]


def _prepare(
    args: argparse.Namespace, session: RestoreSession, registry: str, repository: str
) -> Outcome:
    """The repository's line in the summary, its prepared restore, its exit code if it failed."""
    result: dict[str, Any] = {
        "repository": repository,
        "target": f"{registry.partition('://')[2] or registry}/{repository}",
        "action": "skipped",
        "tags": [],
        "tags_moved": [],
        "tag_counts": {"created": 0, "unchanged": 0, "moved": 0},
        "bytes_uploaded": 0,
        "error": None,
    }
    try:
        states = session.catalog.tags(repository, session.at)
        if not any(s.action is Action.PUSH for s in states):
            result["error"] = "no live tags at that time"
            return result, None, None
        target = parse_target(f"{registry}/{repository}", endpoint=args.to_endpoint)
        return result, session.prepare(ImageRef(repository), target, all_tags=True), None
    except EcrBackupError as e:
        result.update(action="failed", error=e.one_line())
        return result, None, e.exit_code


def _push(
    args: argparse.Namespace,
    session: RestoreSession,
    result: dict[str, Any],
    prepared: Prepared | None,
    failure: ExitCode | None,
) -> tuple[dict[str, Any], ExitCode | None]:
    if prepared is None:
        return result, failure
    try:
        report = session.push(prepared)
    except EcrBackupError as e:
        result.update(action="failed", error=e.one_line())
        return result, e.exit_code
    result.update(
        action="would restore" if args.dry_run else "restored",
        tags=report.tags_set + report.tags_unchanged,
        tags_moved=[m.as_dict() for m in report.tags_moved],
        tag_counts=report.tag_counts,
        bytes_uploaded=report.bytes_uploaded,
    )
    if not args.json and not args.quiet:
        counts = report.tag_counts
        print(
            f"{result['action']} {result['repository']}: {counted(counts['created'], 'tag')} "
            f"{'to create' if args.dry_run else 'created'}, {counts['unchanged']} already in "
            f"place, {counts['moved']} {'would move' if args.dry_run else 'moved'}",
            flush=True,
        )
        verb = "would move" if args.dry_run else "moved"
        for move in report.tags_moved:
            print(f"  {verb} {move.line()}", flush=True)
    return result, None


def _summary(document: dict[str, Any]) -> list[str]:
    counts = document["tag_counts"]
    lines = [
        f"  {r['action']} {r['repository']}: {r['error']}"
        for r in document["repositories"]
        if r["error"]
    ]
    lines.append(
        f"{document['restored']} of {counted(len(document['repositories']), 'repository')} "
        f"{'would be restored' if document['dry_run'] else 'restored'} into "
        f"{document['registry']}: {counted(document['tags'], 'tag')} ({counts['created']} "
        f"{'to create' if document['dry_run'] else 'created'}, {counts['unchanged']} already "
        f"in place, {counts['moved']} {'would move' if document['dry_run'] else 'moved'}), "
        f"{human_size(document['bytes_uploaded'])} uploaded, {document['failed']} failed, "
        f"{document['seconds']:.1f} s"
    )
    return lines
