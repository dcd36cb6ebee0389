"""Lookups for people and scripts: repos, tags, history, show."""

from __future__ import annotations

import argparse
from typing import Any

from ecr_backup.cli.common import (
    add_catalog_options,
    at_from,
    catalog_from,
    emit,
    human_size,
    short,
    table,
)
from ecr_backup.errors import InvalidInputError
from ecr_backup.model import rfc3339
from ecr_backup.oci import mediatypes
from ecr_backup.oci.reference import ImageRef, validate_repository


def register(commands: Any) -> None:
    _register_queries(commands)


def _register_queries(commands: Any) -> None:
    repos = commands.add_parser("repos", help="list the repositories in the backup")
    add_catalog_options(repos)
    repos.set_defaults(run=run_repos)

    tags = commands.add_parser("tags", help="a repository's tags: digest, time, total size")
    tags.add_argument("repository", metavar="REPOSITORY")
    add_catalog_options(tags, at=True)
    tags.set_defaults(run=run_tags)

    history = commands.add_parser(
        "history", help="every digest a tag pointed at, with times, removals included"
    )
    history.add_argument("image", metavar="REPOSITORY:TAG")
    history.add_argument(
        "--untagged", action="store_true", help="the repository's pushes by digest instead"
    )
    add_catalog_options(history, at=True)
    history.set_defaults(run=run_history)

    show = commands.add_parser(
        "show", help="an image's closure: manifests, platforms, blobs, referrers"
    )
    show.add_argument("image", metavar="REPOSITORY[:TAG|@DIGEST]")
    add_catalog_options(show, at=True)
    show.set_defaults(run=run_show)


def short_type(media_type: str) -> str:
    """Media types as people say them; unknown ones as they are."""
    names = {
        mediatypes.OCI_INDEX: "oci index",
        mediatypes.OCI_MANIFEST: "oci manifest",
        mediatypes.DOCKER_MANIFEST_LIST: "docker manifest list",
        mediatypes.DOCKER_MANIFEST: "docker manifest",
        mediatypes.OCI_CONFIG: "oci config",
        mediatypes.DOCKER_CONFIG: "docker config",
        mediatypes.OCI_LAYER: "oci layer (tar)",
        mediatypes.OCI_LAYER_GZIP: "oci layer (gzip)",
        mediatypes.OCI_LAYER_ZSTD: "oci layer (zstd)",
        mediatypes.DOCKER_LAYER_GZIP: "docker layer (gzip)",
        mediatypes.DOCKER_FOREIGN_LAYER_GZIP: "docker foreign layer",
        mediatypes.OCI_EMPTY: "empty",
    }
    return names.get(media_type, media_type)


def _size(size: int | None) -> str:
    return human_size(size) if size is not None else "incomplete"


# -- queries ----------------------------------------------------------------------------------


def run_repos(args: argparse.Namespace) -> int:
    repositories = catalog_from(args).repositories()
    emit(
        args,
        [{"repository": r} for r in repositories],
        repositories or ["(no repositories in the backup)"],
    )
    return 0


def run_tags(args: argparse.Namespace) -> int:
    repository = validate_repository(args.repository)
    rows = catalog_from(args).tag_rows(repository, at_from(args))
    lines = table(
        [
            [
                r.tag,
                short(args, r.digest),
                rfc3339(r.time),
                "removed" if r.removed else "current",
                _size(r.total_size),
            ]
            for r in rows
        ],
        ["TAG", "DIGEST", "SINCE", "STATE", "SIZE"],
    )
    emit(args, rows, lines if rows else [f"{repository}: no tags"])
    return 0


def run_history(args: argparse.Namespace) -> int:
    ref = ImageRef.parse(args.image)
    if ref.digest is not None:
        raise InvalidInputError("history takes REPOSITORY:TAG (or REPOSITORY --untagged)")
    tag = None if args.untagged else ref.tag
    events = catalog_from(args).history(ref.repository, tag, at_from(args))
    lines = table(
        [
            [
                rfc3339(e.time),
                e.action.word,
                short(args, e.digest),
                "/".join(x for x in (e.source_account, e.source_region) if x),
            ]
            for e in events
        ],
        ["TIME", "ACTION", "DIGEST", "SOURCE"],
    )
    emit(args, events, lines)
    return 0


def run_show(args: argparse.Namespace) -> int:
    ref = ImageRef.parse(args.image)
    view = catalog_from(args).show(ref, at_from(args))
    closure = view.closure
    root = closure.root
    name = f"{ref.repository}:{view.resolved.tag}" if view.resolved.tag else ref.repository
    lines = [f"{name}@{root.digest}", f"  type      {short_type(root.media_type)}"]
    if view.resolved.pushed_at:
        lines.append(f"  pushed    {rfc3339(view.resolved.pushed_at)}")
    lines.append(f"  total     {human_size(closure.total_size)}")
    if closure.platforms:
        lines.append(f"  platforms {', '.join(str(p) for p in closure.platforms)}")
    lines.append("")
    lines += table(
        [
            [
                short(args, n.manifest.digest),
                short_type(n.manifest.media_type),
                str(n.platform) if n.platform else "",
                human_size(n.manifest.size),
            ]
            for n in closure.nodes
        ],
        ["MANIFEST", "TYPE", "PLATFORM", "SIZE"],
    )
    lines.append("")
    lines += table(
        [
            [
                short(args, b.digest),
                short_type(b.media_type) + (" (foreign)" if b.is_foreign else ""),
                human_size(b.size),
            ]
            for b in closure.blobs
        ],
        ["BLOB", "TYPE", "SIZE"],
    )
    if view.referrers:
        lines.append("")
        lines += table(
            [
                [
                    short(args, r.root.digest),
                    r.root.artifact_type or short_type(r.root.media_type),
                    short(args, r.root.subject.digest) if r.root.subject else "",
                    human_size(r.total_size),
                ]
                for r in view.referrers
            ],
            ["REFERRER", "ARTIFACT TYPE", "SUBJECT", "SIZE"],
        )
    emit(args, view, lines)
    return 0
