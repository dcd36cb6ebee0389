"""`ecr-backup undelete`: bring back what the source deleted in a window, as it was.

Each image deleted between --since and --until goes back to the registry it was deleted
from (or --to-registry) under its digest, with the tags it had just before; each tag
removed in the window goes back to the digest it pointed at (restore/undelete.py). A tag
that was pushed again since points elsewhere now: it is not moved, but reported as
skipped (the image still comes back, by digest), unless --allow-tag-moves.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from ecr_backup.catalog.catalog import Resolved
from ecr_backup.cli.common import add_catalog_options, emit, human_size
from ecr_backup.cli.restore import add_push_options
from ecr_backup.cli.restore_session import Prepared, RestoreSession
from ecr_backup.errors import EcrBackupError, ExitCode, InvalidInputError
from ecr_backup.model import parse_time, rfc3339
from ecr_backup.registry.ecr import ecr_registry_url
from ecr_backup.restore.plan import plan_images
from ecr_backup.restore.push import TagMove
from ecr_backup.restore.target import Target, parse_target
from ecr_backup.restore.undelete import Deleted, deleted_in
from ecr_backup.text import counted


def register(commands: Any) -> None:
    undelete = commands.add_parser(
        "undelete",
        help="bring back the images and tags the source deleted in a time window",
        description="Restore every image and tag deleted from REPOSITORY (or from every "
        "repository) between --since and --until, as it was just before its deletion, into "
        "the registry it was deleted from (ECR: the account and region of the deletion "
        "events) or --to-registry. A tag pushed again since is not moved: it is reported as "
        "skipped, unless --allow-tag-moves. --dry-run first.",
    )
    undelete.add_argument("repository", nargs="?", metavar="REPOSITORY")
    undelete.add_argument(
        "--all-repositories", action="store_true", help="every repository in the backup"
    )
    undelete.add_argument(
        "--since", required=True, metavar="TIME", help="deletions from this time (ISO 8601)"
    )
    undelete.add_argument(
        "--until", metavar="TIME", help="deletions up to this time (ISO 8601; default: now)"
    )
    undelete.add_argument(
        "--to-registry",
        metavar="[http(s)://]HOST[:PORT]",
        help="the registry to restore into (default: where each image was deleted from)",
    )
    add_push_options(undelete)
    add_catalog_options(undelete)
    undelete.set_defaults(run=run_undelete)


def run_undelete(args: argparse.Namespace) -> int:
    if bool(args.repository) == bool(args.all_repositories):
        raise InvalidInputError("undelete takes a REPOSITORY or --all-repositories (not both)")
    session = RestoreSession.start(args)
    since = parse_time(args.since)
    until = parse_time(args.until) if args.until else session.services.clock()
    if until < since:
        raise InvalidInputError(f"--until {args.until} is before --since {args.since}")
    catalog = session.catalog
    repositories = catalog.repositories() if args.all_repositories else [args.repository]
    document: dict[str, Any] = {
        "since": since,
        "until": until,
        "dry_run": args.dry_run,
        "images": [],
        "skipped": [],
        "failed": [],
    }
    run = _Run(args, session, document)
    failures: list[ExitCode] = []
    for repository in repositories:
        found = deleted_in(catalog, repository, since, until)
        for registry, items in _by_registry(repository, found, args.to_registry).items():
            try:
                run.repository(repository, registry, items)
            except EcrBackupError as e:
                document["failed"].append({"repository": repository, "error": e.one_line()})
                run.lines.append(f"failed {repository}: {e.one_line()}")
                failures.append(e.exit_code)
    run.lines.append(_summary(document))
    emit(args, document, run.lines)
    if failures:
        return max(failures)
    # Something deleted did not come back as it was: a person should look.
    return ExitCode.PROBLEMS if document["skipped"] else ExitCode.OK


def _by_registry(
    repository: str, found: list[Deleted], to_registry: str | None
) -> dict[str, list[Deleted]]:
    """Each deleted image under the registry it goes back to."""
    groups: dict[str, list[Deleted]] = {}
    for item in found:
        if to_registry:
            registry = to_registry.rstrip("/")
        elif item.source_account and item.source_region:
            registry = ecr_registry_url(item.source_account, item.source_region)
        else:
            raise InvalidInputError(
                f"{repository}@{item.digest}: its deletion names no ECR account and region; "
                "pass --to-registry"
            )
        groups.setdefault(registry, []).append(item)
    return groups


@dataclass
class _Run:
    """One undelete: its options, session, and the document and lines it reports."""

    args: argparse.Namespace
    session: RestoreSession
    document: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def repository(self, repository: str, registry: str, items: list[Deleted]) -> None:
        """Bring one repository's deleted images back into one registry."""
        args, session = self.args, self.session
        document, lines = self.document, self.lines
        target = parse_target(f"{registry}/{repository}", endpoint=args.to_endpoint)
        images: list[tuple[Resolved, str | None]] = [
            (Resolved(repository, item.digest, tag, None, None), tag)
            for item in items
            for tag in (list[str | None](item.tags) or [None])
        ]
        prepared = _prepare(args, session, repository, images, target)
        moved = {(m.tag, m.restored): m for m in prepared.tags.moved}
        if moved and not args.allow_tag_moves:
            # Pushed again since: the tag stays where it is now; the image comes back by digest.
            images = [(r, None if (t, r.digest) in moved else t) for r, t in images]
            prepared = _prepare(args, session, repository, images, target)
            for move in moved.values():
                document["skipped"].append(_skipped(move))
                lines.append(
                    f"skipped {repository}:{move.tag}: pushed again since (now {move.current}; "
                    f"was {move.restored}): --allow-tag-moves moves it"
                )
        report = session.push(prepared)
        verb = "would undelete" if args.dry_run else "undeleted"
        restored = {t for t in report.tags_set + report.tags_unchanged}
        for item in items:
            tags = [t for t in item.tags if t in restored]
            document["images"].append(
                {
                    "repository": repository,
                    "digest": str(item.digest),
                    "deleted_at": item.deleted_at,
                    "image_deleted": item.image_deleted,
                    "target": f"{target.host}/{target.repository}",
                    "tags": tags,
                }
            )
            named = f"tags {', '.join(tags)}" if tags else "by digest"
            lines.append(
                f"{verb} {repository}@{item.digest} (deleted {rfc3339(item.deleted_at)}) -> "
                f"{target.host}/{target.repository}: {named}"
            )
        if report.bytes_uploaded:
            lines.append(f"  uploaded {human_size(report.bytes_uploaded)}")


def _prepare(
    args: argparse.Namespace,
    session: RestoreSession,
    repository: str,
    images: list[tuple[Resolved, str | None]],
    target: Target,
) -> Prepared:
    plan = plan_images(
        session.catalog,
        repository,
        images,
        target,
        with_referrers=args.with_referrers,
        concurrency=session.services.settings.concurrency,
    )
    # Several tags of one image are several roots of one closure: its blobs go up once.
    return session.prepare_plan(plan, repository)


def _skipped(move: TagMove) -> dict[str, object]:
    return {
        "repository": move.repository,
        "tag": move.tag,
        "digest": str(move.restored),
        "current": str(move.current),
        "reason": "pushed again since",
    }


def _summary(document: dict[str, Any]) -> str:
    images, skipped, failed = document["images"], document["skipped"], document["failed"]
    tags = sum(len(i["tags"]) for i in images)
    verb = "would bring back" if document["dry_run"] else "brought back"
    window = f"{rfc3339(document['since'])}..{rfc3339(document['until'])}"
    if not (images or skipped or failed):
        return f"nothing was deleted in {window}"
    return (
        f"{verb} {counted(len(images), 'image')} and {counted(tags, 'tag')} deleted in "
        f"{window}; {counted(len(skipped), 'tag')} skipped, "
        f"{counted(len(failed), 'repository')} failed"
    )
