"""Export an image from the bucket without any registry.

Three formats: an OCI image layout directory, the same layout as a tar (skopeo's
`oci-archive:`), and a docker-archive (`docker load`, skopeo's `docker-archive:`). Blobs
stream from S3 straight into the output, checked against their digest on the way; tar
members are written with the sizes the descriptors give, so nothing is staged on disk.
An archive is written under a temporary name and renamed when complete, so a failed
export never leaves a plausible-looking file behind.

The first byte goes out at once: each object's current version is read (one HEAD, in
parallel, to find it), and versions are listed only for an object whose bytes do not hash
to its name, as restore does. Nothing already on disk is trusted either: a blob an OCI
layout already holds is hashed before it is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sys
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

from ecr_backup.cancellation import check_cancelled
from ecr_backup.catalog.catalog import Catalog
from ecr_backup.errors import (
    BlobNotFoundError,
    DigestMismatchError,
    InvalidInputError,
    NotFoundError,
)
from ecr_backup.oci import mediatypes
from ecr_backup.oci.closure import Closure, build_closure
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.progress import Counted, Progress, ProgressFactory, no_progress
from ecr_backup.settings import DEFAULT_CONCURRENCY, MiB
from ecr_backup.storage.reader import BucketReader

log = logging.getLogger(__name__)

Format = Literal["oci", "oci-archive", "docker-archive"]

REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_COPY = MiB
_IMAGE_CONFIGS = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})
_DOCKER_MANIFESTS = frozenset({mediatypes.DOCKER_MANIFEST, mediatypes.DOCKER_MANIFEST_LIST})
# The image-spec's grammar for org.opencontainers.image.ref.name.
_REF_COMPONENT = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_REF_NAME = re.compile(rf"{_REF_COMPONENT}(?:/{_REF_COMPONENT})*")


# distribution/reference's grammar of a docker reference (what `docker load` names an image
# by, and skopeo's docker-archive:PATH:REFERENCE): [DOMAIN[:PORT]/]PATH[:TAG].
_DOMAIN_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOCKER_REFERENCE = re.compile(
    rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?"
    rf"(?P<name>{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
)
_DOCKER_NAME_MAX = 255


def docker_reference(text: str) -> str:
    """A docker-archive's image name, as skopeo's docker-archive transport takes it: a
    docker reference without a digest; a name alone gets the tag `latest`."""
    match = _DOCKER_REFERENCE.fullmatch(text)
    name = text[: match.start("tag") - 1] if match and match["tag"] else text
    if match is None or len(name) > _DOCKER_NAME_MAX:
        raise InvalidInputError(
            f"invalid docker reference {text!r}: use [REGISTRY/]NAME[:TAG], lower-case "
            "name, no digest (e.g. team/app:v1)"
        )
    return text if match["tag"] else f"{text}:latest"


def split_destination(text: str, fmt: Format = "oci") -> tuple[str, str | None]:
    """PATH[:REF], split at the first colon as skopeo's transports do (containers/image's
    SplitPathAndImage): the path cannot hold a colon, the name can. REF is an OCI layout's
    reference name, or a docker-archive's docker reference."""
    path, _, name = text.partition(":")
    if not name:
        return path, None
    if fmt == "docker-archive":
        return path, docker_reference(name)
    if not _REF_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid reference name {name!r}: letters and digits, separated by - . _ : @ + /"
        )
    return path, name


@dataclass
class ExportReport:
    format: Format
    path: str
    ref_name: str | None
    source: str
    digest: Digest
    platform: str | None = None
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    skipped_foreign: list[Digest] = field(default_factory=list)
    recovered_versions: dict[str, str | None] = field(default_factory=dict)
    replaced: list[Digest] = field(default_factory=list)  # corrupt files an OCI layout held
    warnings: list[str] = field(default_factory=list)


def export(
    catalog: Catalog,
    ref: ImageRef,
    fmt: Format,
    path: str,
    *,
    at: datetime | None = None,
    platform: str | None = None,
    ref_name: str | None = None,
    force: bool = False,
    progress: ProgressFactory = no_progress,
) -> ExportReport:
    """Resolve `ref` (now, or at `at`) and write it out in `fmt` to `path` ('-': stdout).

    `ref_name` names the image in an OCI layout (default: the tag); an OCI directory that
    already names another image so is refused unless `force`.
    """
    resolved = catalog.resolve(ref, at)
    closure = catalog.reader.closure(resolved.digest)
    reader = catalog.reader
    name = ref_name or resolved.tag
    if fmt == "docker-archive":
        image = _pick_image(closure, platform)
        if ref_name is not None:  # a docker reference (docker_reference checked it)
            tags = [ref_name]
        else:
            tags = [f"{resolved.repository}:{resolved.tag}"] if resolved.tag else []

        def docker_archive(out: IO[bytes], report: ExportReport) -> None:
            write_docker_archive(reader, image, tags, out, report, progress=progress)

        report = _archive(
            reader,
            path,
            lambda: ExportReport(fmt, path, name, str(resolved), image.digest, platform),
            docker_archive,
        )
    else:
        if platform is not None:
            image = _pick_image(closure, platform)
            closure = build_closure(image.digest, reader.manifest)

        def start() -> ExportReport:
            return ExportReport(fmt, path, name, str(resolved), closure.digest, platform)

        if fmt == "oci":
            if path == "-":
                raise InvalidInputError("--oci needs a directory; use --oci-archive - for stdout")
            report = start()
            with _writing(path):
                write_oci_dir(reader, closure, Path(path), report, force=force, progress=progress)
        else:

            def oci_archive(out: IO[bytes], report: ExportReport) -> None:
                write_oci_archive(reader, closure, out, report, progress)

            report = _archive(reader, path, start, oci_archive)
        report.warnings += _docker_types_warning(closure, fmt)
    report.recovered_versions = {str(d): v for d, v in reader.recovered.items()}
    return report


def _archive(
    reader: BucketReader,
    path: str,
    start: Callable[[], ExportReport],
    write: Callable[[IO[bytes], ExportReport], None],
) -> ExportReport:
    """Write an archive; one whose blob turned out not to hash to its name is written
    again from the intact version (a file only: bytes sent to stdout cannot be taken back)."""
    retried = False
    while True:
        report = start()
        try:
            with _writing(path), _output(path) as out:
                write(out, report)
            return report
        except DigestMismatchError as e:
            if retried or path == "-" or not isinstance(e.digest, Digest):
                raise
            reader.recover(e.digest)
            retried = True


def _docker_types_warning(closure: Closure, fmt: Format) -> list[str]:
    """containers/image (skopeo, podman, buildah) reads only OCI media types from a layout."""
    if not any(n.manifest.media_type in _DOCKER_MANIFESTS for n in closure.nodes):
        return []
    return [
        f"{closure.digest} is a Docker v2 schema 2 image: the {fmt} layout keeps its media "
        "types (and digests), which skopeo, podman and buildah do not read from a layout; "
        "for them use --docker-archive, or restore into a registry"
    ]


def _pick_image(closure: Closure, platform: str | None) -> Manifest:
    if not closure.root.is_index:
        if platform is not None:
            closure.image_for(platform)  # a single image: only checks it is not asked for more
        return closure.root
    choices = [p for p in closure.platforms if p.os != "unknown"]
    if platform is None:
        if len(choices) == 1:
            return closure.image_for(str(choices[0]))
        listed = ", ".join(str(p) for p in choices) or "none"
        raise InvalidInputError(
            f"{closure.digest} is a multi-platform image ({listed}): choose one with --platform"
        )
    return closure.image_for(platform)


@contextmanager
def _writing(path: str) -> Iterator[None]:
    """Local file errors (no such directory, permission, disk full) name the path."""
    try:
        yield
    except OSError as e:
        where = "stdout" if path == "-" else path
        raise InvalidInputError(f"cannot write {where}: {e.strerror or e}") from e


@contextmanager
def _output(path: str) -> Iterator[IO[bytes]]:
    """stdout for '-', else a temporary file renamed over `path` once complete."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    final = Path(path)
    partial = final.with_name(f".{final.name}.partial")
    try:
        with partial.open("wb") as out:
            yield out
        os.replace(partial, final)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


# -- OCI image layout ---------------------------------------------------------------------


def _layout_entry(manifest: Manifest, tag: str | None) -> dict[str, object]:
    entry: dict[str, object] = {
        "mediaType": manifest.media_type,
        "digest": str(manifest.digest),
        "size": manifest.size,
    }
    if tag:
        entry["annotations"] = {REF_NAME: tag}
    return entry


def _read_index_json(index_path: Path) -> dict[str, Any]:
    if not index_path.exists():
        return {}
    try:
        existing = json.loads(index_path.read_bytes())
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both
        raise InvalidInputError(f"{index_path} is not valid JSON") from e
    if not isinstance(existing, dict):
        raise InvalidInputError(f"{index_path} is not an OCI image index")
    return existing


def _index_json(entries: list[dict[str, object]]) -> bytes:
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    return json.dumps(index, indent=2).encode() + b"\n"


def _contents(
    reader: BucketReader, blobs: tuple[Descriptor, ...], report: ExportReport
) -> list[Descriptor]:
    """The blobs to write: all of `blobs`, minus foreign layers the bucket lacks. One HEAD
    each, in parallel; versions are listed only for a missing or wrongly sized object."""

    def present(blob: Descriptor) -> bool:
        try:
            reader.locate(blob.digest, size=blob.size)
        except BlobNotFoundError:
            if not blob.is_foreign:
                raise
            return False
        return True

    with ThreadPoolExecutor(DEFAULT_CONCURRENCY * 2, thread_name_prefix="locate") as pool:
        found = list(pool.map(present, blobs))
    report.skipped_foreign += [b.digest for b, ok in zip(blobs, found, strict=True) if not ok]
    return [b for b, ok in zip(blobs, found, strict=True) if ok]


def _file_digest(path: Path) -> Digest:
    hasher = hashlib.sha256()
    with path.open("rb") as held:
        while chunk := held.read(_COPY):
            hasher.update(chunk)
    return Digest.from_hash(hasher)


def write_oci_dir(
    reader: BucketReader,
    closure: Closure,
    directory: Path,
    report: ExportReport,
    *,
    force: bool = False,
    progress: ProgressFactory = no_progress,
) -> None:
    """Write (or add to) an OCI image layout directory; other images in it stay."""
    blobs_dir = directory / "blobs" / "sha256"
    index_path = directory / "index.json"
    entries = _kept_entries(directory, closure.digest, report.ref_name, force=force)
    blobs_dir.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_bytes(_LAYOUT)
    bar = progress(sum(b.size for b in closure.blobs), "export")
    contents = _contents(reader, closure.blobs, report)
    for node in closure.nodes:
        path = blobs_dir / node.manifest.digest.hex
        if path.exists() and _file_digest(path) != node.manifest.digest:
            report.replaced.append(node.manifest.digest)
            path.unlink()
        if not path.exists():
            path.write_bytes(node.manifest.raw)
        report.manifests += 1
    bar.grow(-sum(b.size for b in closure.blobs) + sum(b.size for b in contents))
    for blob in contents:
        check_cancelled()
        path = blobs_dir / blob.digest.hex
        report.blobs += 1
        if path.exists():
            # Content-addressed, written before (by us, skopeo, anyone): kept if its bytes
            # are its name, replaced (and reported) otherwise.
            if path.stat().st_size == blob.size and _file_digest(path) == blob.digest:
                log.debug("blob %s already in the layout", blob.digest)
                bar.advance(blob.size)
                continue
            report.replaced.append(blob.digest)
        _write_blob(reader, blob, blobs_dir, bar)
        log.debug("blob %s written (%d bytes)", blob.digest, blob.size)
        report.bytes += blob.size
    bar.finish()
    check_cancelled()  # an interrupted export never names the image in index.json
    entries.append(_layout_entry(closure.root, report.ref_name))
    index_path.write_bytes(_index_json(entries))


def _write_blob(reader: BucketReader, blob: Descriptor, blobs_dir: Path, bar: Progress) -> None:
    """Into a partial file, renamed when its digest checked; one whose current version is
    not intact is read again from the version that is, as restore does."""
    partial = blobs_dir / f".{blob.digest.hex}.partial"
    for attempt in (1, 2):
        counted: Counted | None = None
        try:
            with (
                reader.open_blob(blob.digest, blob.size) as stream,
                partial.open("wb") as out,
            ):
                counted = Counted(stream, bar)
                while chunk := counted.read(_COPY):
                    out.write(chunk)
            os.replace(partial, blobs_dir / blob.digest.hex)
            return
        except DigestMismatchError:
            with contextlib.suppress(OSError):
                partial.unlink()
            if attempt == 2:
                raise
            reader.recover(blob.digest, blob.size)
            if counted is not None:
                bar.advance(-counted.count)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise


def _kept_entries(
    directory: Path, digest: Digest, ref_name: str | None, *, force: bool
) -> list[dict[str, object]]:
    """The layout's index entries that stay. Another image under the same reference name
    is refused (the export would silently lose it) unless `force` replaces it."""
    if not directory.exists() or not any(directory.iterdir()):
        return []
    if not (directory / "oci-layout").is_file():
        raise InvalidInputError(f"{directory} exists and is not an OCI image layout")
    existing = _read_index_json(directory / "index.json")
    kept: list[dict[str, object]] = []
    for entry in existing.get("manifests", []):
        name = (entry.get("annotations") or {}).get(REF_NAME)
        if name != ref_name:
            kept.append(entry)
        elif entry.get("digest") != str(digest) and not force:
            raise InvalidInputError(
                f"{directory} already holds {entry.get('digest')} as {ref_name or 'unnamed'}: "
                "name this one DIR:REF, or pass --force to replace it"
            )
    return kept


class _Appender:
    """Write-only file for TarFile: it asks tell() once and never seeks, so pipes work."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._written = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written


def _tar(out: IO[bytes]) -> tarfile.TarFile:
    # PAX headers carry any size; 1 MiB copies keep a GiB layer from costing 65k loops.
    writer = cast(IO[bytes], _Appender(out))
    return tarfile.TarFile(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_COPY)


def _member(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0  # the same image exports to the same bytes
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_member(name, len(data)), io.BytesIO(data))


def _add_blob(
    tar: tarfile.TarFile, reader: BucketReader, name: str, blob: Descriptor, bar: Progress
) -> None:
    with reader.open_blob(blob.digest, blob.size) as stream:
        tar.addfile(_member(name, blob.size), Counted(stream, bar))
    log.debug("blob %s written (%d bytes)", blob.digest, blob.size)  # -v, blob by blob


def write_oci_archive(
    reader: BucketReader,
    closure: Closure,
    out: IO[bytes],
    report: ExportReport,
    progress: ProgressFactory = no_progress,
) -> None:
    bar = progress(sum(b.size for b in closure.blobs), "export")
    contents = _contents(reader, closure.blobs, report)
    bar.grow(-sum(b.size for b in closure.blobs) + sum(b.size for b in contents))
    with _tar(out) as tar:
        _add_bytes(tar, "oci-layout", _LAYOUT)
        entry = _layout_entry(closure.root, report.ref_name)
        _add_bytes(tar, "index.json", _index_json([entry]))
        tar.addfile(_member("blobs", 0, directory=True))
        tar.addfile(_member("blobs/sha256", 0, directory=True))
        for node in closure.nodes:
            _add_bytes(tar, f"blobs/sha256/{node.manifest.digest.hex}", node.manifest.raw)
            report.manifests += 1
        for blob in contents:
            _add_blob(tar, reader, f"blobs/sha256/{blob.digest.hex}", blob, bar)
            report.blobs += 1
            report.bytes += blob.size
    bar.finish()


# -- docker-archive ------------------------------------------------------------------------


def write_docker_archive(
    reader: BucketReader,
    image: Manifest,
    repo_tags: list[str],
    out: IO[bytes],
    report: ExportReport,
    *,
    progress: ProgressFactory = no_progress,
) -> None:
    """manifest.json + config + layers, as `docker save` writes (the layout Docker 25 uses)."""
    if image.is_index:
        raise InvalidInputError(f"{image.digest} is an index: choose a platform")
    config = image.blobs[0]
    if config.media_type not in _IMAGE_CONFIGS:
        raise InvalidInputError(
            f"{image.digest} is an artifact ({image.artifact_type or config.media_type}), "
            "not a container image: export it with --oci or --oci-archive"
        )
    layers = list(image.blobs[1:])
    bar = progress(sum({b.digest: b.size for b in [config, *layers]}.values()), "export")
    held = _contents(reader, image.blobs, report)
    for layer in layers:
        if layer not in held:
            raise NotFoundError(
                f"layer {layer.digest} is not in the backup"
                " (a foreign layer: docker-archive needs every layer)"
            )
    manifest_json = [
        {
            "Config": f"blobs/sha256/{config.digest.hex}",
            "RepoTags": repo_tags,
            "Layers": [f"blobs/sha256/{layer.digest.hex}" for layer in layers],
        }
    ]
    with _tar(out) as tar:
        tar.addfile(_member("blobs", 0, directory=True))
        tar.addfile(_member("blobs/sha256", 0, directory=True))
        written: set[Digest] = set()
        for blob in [config, *layers]:
            if blob.digest in written:
                continue  # an image may list the same layer twice; the file is shared
            written.add(blob.digest)
            _add_blob(tar, reader, f"blobs/sha256/{blob.digest.hex}", blob, bar)
            report.blobs += 1
            report.bytes += blob.size
        _add_bytes(tar, "manifest.json", json.dumps(manifest_json).encode())
    bar.finish()
    report.manifests = 1
