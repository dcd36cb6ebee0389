"""Restored referrers stay discoverable from their subject.

OCI distribution-spec 1.1 ("Pushing Manifests with Subject", "Referrers Tag Schema"): a
client that pushes a manifest with a `subject` to a registry without the referrers API
(`GET /v2/<name>/referrers/<digest>` answers 404, as CNCF distribution 2.x does) maintains
an OCI image index under the tag `<alg>-<hex>` of the subject: it pulls the index (a 404
starts an empty one; anything but an OCI index is reported and left alone), appends a
descriptor for each pushed manifest not listed yet (with `artifactType`, or the config's
media type, and the manifest's annotations), and pushes the index back. Where the API
exists, the registry keeps the list itself, and the restore asks it to check.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ecr_backup.errors import ManifestNotFoundError
from ecr_backup.oci import mediatypes
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import ImageManifest, Manifest, parse_manifest
from ecr_backup.restore.ports import TargetRegistry

_NOT_IN_TAGS = re.compile(r"[^a-zA-Z0-9_.-]")


def referrers_tag(subject: Digest) -> str:
    """The tag the referrers tag schema names for `subject`: `sha256-<hex>`."""
    algorithm = _NOT_IN_TAGS.sub("-", subject.algorithm[:32])
    return f"{algorithm}-{_NOT_IN_TAGS.sub('-', subject.hex[:64])}"


def referrer_descriptor(manifest: Manifest) -> dict[str, Any]:
    """The descriptor the referrers API would list for `manifest`."""
    content = manifest.content
    artifact_type = content.artifact_type
    if not artifact_type and isinstance(content, ImageManifest):
        artifact_type = content.config.media_type
    descriptor: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": str(manifest.digest),
        "size": manifest.size,
    }
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    if content.annotations:
        descriptor["annotations"] = dict(content.annotations)
    return descriptor


@dataclass
class ReferrersOutcome:
    listed: list[Digest] = field(default_factory=list)  # found through the referrers API
    unlisted: list[Digest] = field(default_factory=list)  # the API does not list them
    tags_updated: list[str] = field(default_factory=list)  # referrers tags written (or to be)
    problems: list[str] = field(default_factory=list)


def index_referrers(
    registry: TargetRegistry,
    repository: str,
    referrers: list[Manifest],
    outcome: ReferrersOutcome,
    *,
    write: bool,
) -> None:
    """After the referrers are pushed: check them with the referrers API, else merge them
    into their subjects' referrers tags (`write` False: only say which tags would change)."""
    by_subject: dict[Digest, list[Manifest]] = {}
    for referrer in referrers:
        if referrer.subject is not None:
            by_subject.setdefault(referrer.subject.digest, []).append(referrer)
    for subject, pushed in by_subject.items():
        listed = registry.referrers(repository, subject)
        if listed is not None:
            known = {d.digest for d in listed}
            outcome.listed += [r.digest for r in pushed if r.digest in known]
            outcome.unlisted += [r.digest for r in pushed if r.digest not in known]
            continue
        _merge_tag(registry, repository, subject, pushed, outcome, write=write)


def _merge_tag(
    registry: TargetRegistry,
    repository: str,
    subject: Digest,
    pushed: list[Manifest],
    outcome: ReferrersOutcome,
    *,
    write: bool,
) -> None:
    tag = referrers_tag(subject)
    try:
        current: Manifest | None = registry.get_manifest(repository, tag)
    except ManifestNotFoundError:
        current = None
    if current is not None and current.media_type != mediatypes.OCI_INDEX:
        outcome.problems.append(
            f"{repository}:{tag} is a {current.media_type}, not the referrers index of "
            f"{subject}: left as it is"
        )
        return
    document: dict[str, Any] = (
        json.loads(current.raw)
        if current is not None
        else {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}
    )
    entries: list[dict[str, Any]] = list(document.get("manifests") or [])
    known = {entry.get("digest") for entry in entries}
    added = [referrer_descriptor(r) for r in pushed if str(r.digest) not in known]
    if not added:
        return
    outcome.tags_updated.append(tag)
    if write:
        # Everything else the index holds (other clients' referrers, its own fields) stays.
        document["manifests"] = entries + added
        raw = json.dumps(document, indent=2).encode()
        registry.put_manifest(repository, tag, parse_manifest(raw, mediatypes.OCI_INDEX))
