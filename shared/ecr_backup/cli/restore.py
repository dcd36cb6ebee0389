"""Restore-side subcommands: restore, export, verify, rebuild-index.

Only the bucket is needed for anything named by digest; tag lookups use the index table when
one is configured and reachable, else the bucket's push records (--from-bucket forces that).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ecr_backup.cli import disaster
from ecr_backup.cli.common import (
    add_catalog_options,
    add_storage_options,
    add_tls_options,
    at_from,
    catalog_from,
    emit,
    human_size,
    json_report,
    services_from,
)
from ecr_backup.cli.options import progress_for
from ecr_backup.cli.restore_session import (
    PASSWORD_ENV,
    USERNAME_ENV,
    RestoreSession,
)
from ecr_backup.errors import ExitCode, InvalidInputError
from ecr_backup.maintenance.rebuild import rebuild_index
from ecr_backup.maintenance.verify import verify
from ecr_backup.model import rfc3339
from ecr_backup.oci.reference import ImageRef
from ecr_backup.restore.export import Format, export, split_destination
from ecr_backup.restore.plan import RestorePlan
from ecr_backup.restore.push import RestoreReport
from ecr_backup.restore.target import parse_target
from ecr_backup.settings import DEFAULT_CONCURRENCY
from ecr_backup.text import counted


def register(commands: Any) -> None:
    _register_restore(commands)
    _register_export(commands)
    _register_checks(commands)


def _register_restore(commands: Any) -> None:
    restore = commands.add_parser(
        "restore",
        help="push images from the backup into a registry, digests unchanged",
        description="Push an image (or a whole repository) from the backup into a registry. "
        "Blobs and manifests go first, by digest; tags are set last, so a restore that fails "
        "leaves nothing tagged. ECR targets use ECR auth; other registries the login docker, "
        "podman or skopeo saved (REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR/containers/auth.json, "
        f"DOCKER_CONFIG/config.json), or --to-username with the password in {PASSWORD_ENV}.",
    )
    restore.add_argument("image", nargs="?", metavar="REPOSITORY[:TAG|@DIGEST]")
    restore.add_argument(
        "--to",
        metavar="[http(s)://]HOST[:PORT]/REPOSITORY[:TAG]",
        help="target registry and repository; the tag defaults to the source tag",
    )
    disaster.add_options(restore)
    restore.add_argument("--all-tags", action="store_true", help="every tag of REPOSITORY")
    add_push_options(restore)
    add_catalog_options(restore, at=True)
    restore.set_defaults(run=run_restore)


def _register_export(commands: Any) -> None:
    export_ = commands.add_parser(
        "export", help="write an image as an OCI layout or a docker-archive, no registry needed"
    )
    export_.add_argument("image", metavar="REPOSITORY[:TAG|@DIGEST]")
    out = export_.add_mutually_exclusive_group(required=True)
    out.add_argument(
        "--oci", metavar="DIR[:REF]", help="OCI image layout directory (skopeo oci:DIR:REF)"
    )
    out.add_argument(
        "--oci-archive", metavar="FILE[:REF]", help="OCI layout as a tar ('-': stdout)"
    )
    out.add_argument(
        "--docker-archive",
        metavar="FILE[:REF]",
        help="for `docker load` ('-': stdout); REF names the image there, a docker reference "
        "(default: REPOSITORY:TAG)",
    )
    export_.add_argument(
        "--force",
        action="store_true",
        help="replace an image the OCI layout already holds under the same reference name",
    )
    export_.add_argument(
        "--platform", metavar="OS/ARCH[/VARIANT]", help="one image of a multi-platform index"
    )
    add_catalog_options(export_, at=True)
    export_.set_defaults(run=run_export)


def _register_checks(commands: Any) -> None:
    verify_ = commands.add_parser(
        "verify", help="check that every backed-up image is in the bucket, intact"
    )
    verify_.add_argument("image", nargs="?", metavar="REPOSITORY[:TAG|@DIGEST]")
    verify_.add_argument("--deep", action="store_true", help="re-read and re-hash every object")
    verify_.add_argument("--concurrency", type=int, help="objects hashed at once (default 4)")
    add_catalog_options(verify_, at=True)
    verify_.set_defaults(run=run_verify)

    rebuild = commands.add_parser(
        "rebuild-index", help="rewrite the index table from the bucket alone"
    )
    rebuild.add_argument("--concurrency", type=int, help="repositories replayed at once")
    add_storage_options(rebuild)
    rebuild.set_defaults(run=run_rebuild_index)


# -- restore ------------------------------------------------------------------------------------


def add_push_options(restore: argparse.ArgumentParser) -> None:
    """What every command that pushes from the backup into a registry takes (restore,
    undelete): referrers, dry run, tag moves, target auth, mounts, chunks, TLS."""
    restore.add_argument(
        "--with-referrers", action="store_true", help="also signatures, SBOMs, attestations"
    )
    restore.add_argument("--dry-run", action="store_true", help="list what would be pushed")
    restore.add_argument(
        "--allow-tag-moves",
        action="store_true",
        help="move target tags that point at another digest (without it, such a restore "
        "is refused before anything is pushed)",
    )
    restore.add_argument(
        "--create-repository",
        action="store_true",
        help="create a missing repository through ECR's API (ECR hosts, or --to-auth ecr)",
    )
    restore.add_argument(
        "--to-auth",
        choices=("auto", "ecr", "basic", "none"),
        default="auto",
        help="auto: ECR auth for *.dkr.ecr.*.amazonaws.com, else what the registry asks for",
    )
    restore.add_argument("--to-username", help=f"target registry user ({USERNAME_ENV})")
    restore.add_argument(
        "--to-password-stdin",
        action="store_true",
        help=f"read the target password from stdin (else {PASSWORD_ENV})",
    )
    restore.add_argument(
        "--to-endpoint",
        metavar="URL",
        help="send registry requests here (e.g. a VPC endpoint); auth follows --to's host",
    )
    restore.add_argument(
        "--mount-from",
        action="append",
        default=[],
        metavar="REPOSITORY",
        help="a repository of the target registry to mount shared blobs from (repeatable; "
        "the source repository's name is always tried)",
    )
    restore.add_argument(
        "--no-mount",
        action="store_true",
        help="never ask the target to mount blobs from other repositories: upload them",
    )
    restore.add_argument(
        "--chunk-size-mib",
        type=int,
        help="upload each blob in PATCH chunks of this size (at least 5), for registries "
        "that refuse big requests; by default each blob goes up in one streamed request, "
        "which is what ECR needs",
    )
    restore.add_argument("--concurrency", type=int, help="blobs in flight (default 4)")
    target = restore.add_argument_group("ECR target in another account (default: --profile's)")
    target.add_argument("--to-profile", help="AWS profile for the ECR target")
    target.add_argument("--to-region", help="AWS region for the ECR target's API")
    target.add_argument("--to-role-arn", metavar="ARN", help="role to assume for the ECR target")
    add_tls_options(restore)


def run_restore(args: argparse.Namespace) -> int:
    if args.chunk_size_mib is not None and args.chunk_size_mib < 5:
        raise InvalidInputError("--chunk-size-mib must be at least 5 (ECR's minimum part)")
    if args.all_repositories:
        return disaster.run_all(args, RestoreSession.start(args))
    if args.image is None or args.to is None:
        raise InvalidInputError(
            "restore needs REPOSITORY[:TAG|@DIGEST] and --to (or --all-repositories "
            "--to-registry HOST)"
        )
    ref = ImageRef.parse(args.image, default_tag=None if args.all_tags else "latest")
    target = parse_target(args.to, endpoint=args.to_endpoint)
    session = RestoreSession.start(args)
    prepared = session.prepare(ref, target, all_tags=args.all_tags)
    session.refuse_moves(prepared.tags.moved)
    report = session.push(prepared)
    emit(
        args,
        {"plan": prepared.plan, "report": report},
        describe(prepared.plan, report),
        summary=True,
    )
    return session.dry_run_verdict(report.tags_moved)


def tag_lines(report: RestoreReport) -> list[str]:
    """Tags created, left alone and moved (each move on its own line, from -> to)."""
    dry = report.dry_run
    counts = report.tag_counts
    lines = [
        f"  tags: {counts['created']} {'to create' if dry else 'created'}, "
        f"{counts['unchanged']} already in place, {counts['moved']} "
        f"{'would move' if dry else 'moved'}"
    ]
    if report.tags_created:
        lines.append(f"  {'to create' if dry else 'created'}: {', '.join(report.tags_created)}")
    if report.tags_unchanged:
        lines.append(f"  already in place: {', '.join(report.tags_unchanged)}")
    lines += [f"  {'would move' if dry else 'moved'} {m.line()}" for m in report.tags_moved]
    return lines


def describe(plan: RestorePlan, report: RestoreReport) -> list[str]:
    """The restore summary for people."""
    dry = report.dry_run
    target = f"{plan.target.host}/{plan.target.repository}"
    lines: list[str] = []
    for root in plan.roots:
        name = (
            f"{target}:{root.target_tag}" if root.target_tag else f"{target}@{root.closure.digest}"
        )
        lines.append(f"{'would restore' if dry else 'restored'} {root.resolved} -> {name}")
    if report.created_repository:
        lines.append(f"  repository {plan.target.repository} {'to create' if dry else 'created'}")
    lines += [
        f"  blobs: {'to upload' if dry else 'uploaded'} {len(report.blobs_uploaded)} "
        f"({human_size(report.bytes_uploaded)}), {'to mount' if dry else 'mounted'} "
        f"{len(report.blobs_mounted)} ({human_size(report.bytes_mounted)}), already there "
        f"{len(report.blobs_present)} ({human_size(report.bytes_present)})",
        f"  manifests: {'to push' if dry else 'pushed'} {len(report.manifests_pushed)}, "
        f"already there {len(report.manifests_present)}",
    ]
    if plan.referrers:
        found = report.referrers
        lines.append(f"  referrers included: {len(plan.referrers)}")
        if found.listed:
            lines.append(f"  referrers listed by the target's referrers API: {len(found.listed)}")
        lines += [f"  not listed by the target's referrers API: {d}" for d in found.unlisted]
        if found.tags_updated:
            lines.append(
                f"  referrers tags {'to update' if dry else 'updated'} (no referrers API): "
                + ", ".join(found.tags_updated)
            )
        lines += [f"  referrers tag not updated: {p}" for p in found.problems]
    if report.tags_set or report.tags_unchanged:
        lines += tag_lines(report)
    else:
        lines.append("  no tag: pull by digest")
    for state in plan.removed_tags:
        lines.append(
            f"  skipped tag {state.tag}: removed at {rfc3339(state.time)} (was {state.digest})"
        )
    for blob in plan.foreign:
        lines.append(f"  foreign layer not in the backup, not pushed: {blob.digest}")
    for digest, version in report.recovered_versions.items():
        lines.append(f"  {digest}: current object version not intact, read version {version}")
    if not dry:
        rate = int(report.bytes_uploaded / report.seconds) if report.seconds > 0 else 0
        speed = f" ({human_size(rate)}/s uploaded)" if report.bytes_uploaded else ""
        lines.append(f"  took {report.seconds:.1f} s{speed}")
    return lines


# -- export, verify, rebuild ---------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    ref = ImageRef.parse(args.image)
    fmt: Format
    if args.oci:
        fmt, destination = "oci", args.oci
    elif args.oci_archive:
        fmt, destination = "oci-archive", args.oci_archive
    else:
        fmt, destination = "docker-archive", args.docker_archive
    path, ref_name = split_destination(destination, fmt)
    if path == "-" and sys.stdout.isatty():
        raise InvalidInputError(
            f"refusing to write a {fmt} to a terminal: redirect stdout or name a file"
        )
    report = export(
        catalog_from(args),
        ref,
        fmt,
        path,
        at=at_from(args),
        platform=args.platform,
        ref_name=ref_name,
        force=args.force,
        progress=progress_for(args),
    )
    where = "stdout" if path == "-" else path
    named = f" as {report.ref_name}" if report.ref_name else ""
    lines = [
        f"exported {report.source}{named} in {fmt} to {where}",
        f"  {counted(report.manifests, 'manifest')}, {counted(report.blobs, 'blob')}, "
        f"{human_size(report.bytes)}"
        + (f", platform {report.platform}" if report.platform else ""),
    ]
    lines += [f"  foreign layer not in the backup, left out: {d}" for d in report.skipped_foreign]
    lines += [f"  replaced a corrupt file the layout held: {d}" for d in report.replaced]
    lines += [
        f"  {digest}: current object version not intact, read version {version}"
        for digest, version in report.recovered_versions.items()
    ]
    if not args.json:  # a warning is not a summary: -q still shows it
        for warning in report.warnings:
            print(f"ecr-backup: warning: {warning}", file=sys.stderr)
    if path == "-":
        # stdout carries the archive: the summary goes to stderr.
        if args.json:
            print(json_report(args, report), file=sys.stderr)
        elif not args.quiet:
            print("\n".join(lines), file=sys.stderr)
    else:
        emit(args, report, lines, summary=True)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    ref = ImageRef.parse(args.image) if args.image else None
    at = at_from(args)
    if at is not None and ref is None:
        raise InvalidInputError("--at needs an image: verify REPOSITORY:TAG --at TIME")
    catalog = catalog_from(args)
    concurrency = args.concurrency or DEFAULT_CONCURRENCY
    report = verify(
        catalog,
        ref=ref,
        at=at,
        deep=args.deep,
        concurrency=concurrency,
        progress=progress_for(args),
    )
    hashed = (
        f"; re-hashed {counted(report.objects_hashed, 'object')} "
        f"({human_size(report.bytes_hashed)})"
        if report.objects_hashed
        else ""
    )
    lines = [
        f"verified {report.scope}{' (deep)' if report.deep else ''}: "
        f"{counted(report.images, 'image')}, {counted(report.manifests, 'manifest')}, "
        f"{counted(report.blobs, 'blob')} ({human_size(report.bytes)})"
        f"{hashed}",
    ]
    lines += [f"  note: {n}" for n in report.notes]
    problems = [f"{counted(len(report.problems), 'problem')}:"] if report.problems else []
    problems += [f"  {p.kind}: {p}" for p in report.problems]
    if not problems:
        lines.append("no problems found")
    emit(args, report, lines, summary=True, problems=problems)
    return ExitCode.OK if report.ok else ExitCode.PROBLEMS


def run_rebuild_index(args: argparse.Namespace) -> int:
    services = services_from(args)
    report = rebuild_index(
        services.store,
        services.index,
        concurrency=services.settings.concurrency,
        ledger=services.ledger,
        locks=services.locks,
    )
    lines = [
        f"index {report.table} {'created and ' if report.created_table else ''}rebuilt from "
        f"s3://{services.settings.bucket}/{services.settings.prefix} in {report.seconds:.1f} s",
        f"  {report.records} push records ({len(report.invalid_records)} invalid), "
        f"{counted(report.repositories, 'repository')}",
        f"  {counted(report.manifests_complete, 'complete manifest')}, "
        f"{counted(report.blobs, 'blob')} "
        f"({report.unreferenced_blobs} not referenced by any manifest)",
    ]
    lines.append(
        f"  {counted(report.holds, 'hold')} in force, "
        f"{counted(report.locks, 'lock end')} read from S3"
    )
    problems = [f"  invalid record: {r}" for r in report.invalid_records]
    problems += [f"  incomplete: {m}" for m in report.manifests_incomplete]
    problems += [f"  {kind}: {digest}: {why}" for kind, digest, why in report.problems]
    emit(args, report, lines, summary=True, problems=problems)
    return ExitCode.OK if report.ok else ExitCode.PROBLEMS
