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
from ecr_backup.cli.restore_session import RestoreSession
from ecr_backup.errors import EcrBackupError, ExitCode, InvalidInputError
from ecr_backup.model import Action
from ecr_backup.oci.reference import ImageRef
from ecr_backup.restore.target import parse_target


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
    outcomes = [_restore_repository(args, session, registry, r) for r in repositories]
    results = [result for result, _ in outcomes]
    failures = [code for _, code in outcomes if code is not None]
    document = {
        "registry": registry,
        "at": session.at,
        "dry_run": args.dry_run,
        "repositories": results,
        "restored": sum(r["action"] in ("restored", "would restore") for r in results),
        "failed": len(failures),
        "tags": sum(len(r["tags"]) for r in results),
        "bytes_uploaded": sum(r["bytes_uploaded"] for r in results),
        "seconds": round(time.monotonic() - started, 3),
    }
    emit(args, document, _summary(document), summary=not failures)
    # The worst failure decides: a data error (5) outranks an unreachable registry (4).
    return max(failures, default=ExitCode.OK)


def _restore_repository(
    args: argparse.Namespace, session: RestoreSession, registry: str, repository: str
) -> tuple[dict[str, Any], ExitCode | None]:
    """The repository's line in the summary, and its exit code if it failed."""
    result: dict[str, Any] = {
        "repository": repository,
        "target": f"{registry.partition('://')[2] or registry}/{repository}",
        "action": "skipped",
        "tags": [],
        "bytes_uploaded": 0,
        "error": None,
    }
    try:
        states = session.catalog.tags(repository, session.at)
        if not any(s.action is Action.PUSH for s in states):
            result["error"] = "no live tags at that time"
            return result, None
        target = parse_target(f"{registry}/{repository}", endpoint=args.to_endpoint)
        _, report = session.restore(ImageRef(repository), target, all_tags=True)
    except EcrBackupError as e:
        result.update(action="failed", error=e.one_line())
        return result, e.exit_code
    result.update(
        action="would restore" if args.dry_run else "restored",
        tags=report.tags_set + report.tags_unchanged,
        bytes_uploaded=report.bytes_uploaded,
    )
    if not args.json and not args.quiet:
        print(f"{result['action']} {repository}: {len(result['tags'])} tag(s)", flush=True)
    return result, None


def _summary(document: dict[str, Any]) -> list[str]:
    lines = [
        f"  {r['action']} {r['repository']}: {r['error']}"
        for r in document["repositories"]
        if r["error"]
    ]
    lines.append(
        f"{document['restored']} of {len(document['repositories'])} repositories "
        f"{'would be restored' if document['dry_run'] else 'restored'} into "
        f"{document['registry']}: {document['tags']} tag(s), "
        f"{human_size(document['bytes_uploaded'])} uploaded, {document['failed']} failed, "
        f"{document['seconds']:.1f} s"
    )
    return lines
