"""Export an image from the bucket without any registry.

Three formats: an OCI image layout directory, the same layout as a tar (skopeo's
`oci-archive:`), and a docker-archive (`docker load`, skopeo's `docker-archive:`). Blobs
stream from S3 straight into the output, checked against their digest on the way; tar
members are written with the sizes the descriptors give, so nothing is staged on disk.
An archive is written under a temporary name and renamed when complete, so a failed
export never leaves a plausible-looking file behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, cast

from ecr_backup.errors import BlobNotFoundError, InvalidInputError, NotFoundError
from ecr_backup.oci import mediatypes
from ecr_backup.oci.closure import Closure, build_closure
from ecr_backup.oci.digest import Digest
from ecr_backup.oci.manifest import Descriptor, Manifest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.restore.catalog import Catalog, Resolved
from ecr_backup.settings import MiB
from ecr_backup.storage.reader import BucketReader

Format = Literal["oci", "oci-archive", "docker-archive"]

REF_NAME = "org.opencontainers.image.ref.name"
_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
_COPY = MiB
_IMAGE_CONFIGS = frozenset({mediatypes.OCI_CONFIG, mediatypes.DOCKER_CONFIG})


@dataclass
class ExportReport:
    format: Format
    path: str
    source: str
    digest: Digest
    platform: str | None = None
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    skipped_foreign: list[Digest] = field(default_factory=list)
    recovered_versions: dict[str, str | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "path": self.path,
            "source": self.source,
            "digest": str(self.digest),
            "platform": self.platform,
            "manifests": self.manifests,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "skipped_foreign": [str(d) for d in self.skipped_foreign],
            "recovered_versions": self.recovered_versions,
        }


def export(
    catalog: Catalog,
    ref: ImageRef,
    fmt: Format,
    path: str,
    *,
    at: datetime | None = None,
    platform: str | None = None,
) -> ExportReport:
    """Resolve `ref` (now, or at `at`) and write it out in `fmt` to `path` ('-': stdout)."""
    resolved = catalog.resolve(ref, at)
    closure = catalog.reader.closure(resolved.digest)
    reader = catalog.reader
    if fmt == "docker-archive":
        image = _pick_image(closure, platform)
        report = ExportReport(fmt, path, str(resolved), image.digest, platform)
        with _writing(path), _output(path) as out:
            write_docker_archive(reader, image, _repo_tags(resolved), out, report)
    else:
        if platform is not None:
            image = _pick_image(closure, platform)
            closure = build_closure(image.digest, reader.manifest)
        report = ExportReport(fmt, path, str(resolved), closure.digest, platform)
        if fmt == "oci":
            if path == "-":
                raise InvalidInputError("--oci needs a directory; use --oci-archive - for stdout")
            with _writing(path):
                write_oci_dir(reader, closure, Path(path), resolved.tag, report)
        else:
            with _writing(path), _output(path) as out:
                write_oci_archive(reader, closure, resolved.tag, out, report)
    report.recovered_versions = {str(d): v for d, v in reader.recovered.items()}
    return report


def _repo_tags(resolved: Resolved) -> list[str]:
    return [f"{resolved.repository}:{resolved.tag}"] if resolved.tag else []


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


def _contents(reader: BucketReader, closure: Closure, report: ExportReport) -> list[Descriptor]:
    """The blobs to write: all of the closure's, minus foreign layers the bucket lacks."""
    blobs: list[Descriptor] = []
    for blob in closure.blobs:
        try:
            reader.locate(blob.digest, size=blob.size, thorough=True)
        except BlobNotFoundError:
            if not blob.is_foreign:
                raise
            report.skipped_foreign.append(blob.digest)
            continue
        blobs.append(blob)
    return blobs


def write_oci_dir(
    reader: BucketReader, closure: Closure, directory: Path, tag: str | None, report: ExportReport
) -> None:
    """Write (or add to) an OCI image layout directory."""
    blobs_dir = directory / "blobs" / "sha256"
    index_path = directory / "index.json"
    entries: list[dict[str, object]] = []
    if directory.exists() and any(directory.iterdir()):
        if not (directory / "oci-layout").is_file():
            raise InvalidInputError(f"{directory} exists and is not an OCI image layout")
        existing = _read_index_json(index_path)
        for entry in existing.get("manifests", []):
            name = (entry.get("annotations") or {}).get(REF_NAME)
            # The same name now means this image; everything else in the layout stays.
            if not (tag and name == tag) and entry.get("digest") != str(closure.digest):
                entries.append(entry)
    blobs_dir.mkdir(parents=True, exist_ok=True)
    (directory / "oci-layout").write_bytes(_LAYOUT)
    contents = _contents(reader, closure, report)
    for node in closure.nodes:
        path = blobs_dir / node.manifest.digest.hex
        if not path.exists():
            path.write_bytes(node.manifest.raw)
        report.manifests += 1
    for blob in contents:
        path = blobs_dir / blob.digest.hex
        report.blobs += 1
        if path.exists() and path.stat().st_size == blob.size:
            continue  # content-addressed: written before, by us or by skopeo
        partial = blobs_dir / f".{blob.digest.hex}.partial"
        try:
            with (
                reader.open_blob(blob.digest, blob.size, thorough=True) as stream,
                partial.open("wb") as out,
            ):
                while chunk := stream.read(_COPY):
                    out.write(chunk)
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        report.bytes += blob.size
    entries.append(_layout_entry(closure.root, tag))
    index_path.write_bytes(_index_json(entries))


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


def _add_blob(tar: tarfile.TarFile, reader: BucketReader, name: str, blob: Descriptor) -> None:
    with reader.open_blob(blob.digest, blob.size, thorough=True) as stream:
        tar.addfile(_member(name, blob.size), stream)


def write_oci_archive(
    reader: BucketReader,
    closure: Closure,
    tag: str | None,
    out: IO[bytes],
    report: ExportReport,
) -> None:
    contents = _contents(reader, closure, report)
    with _tar(out) as tar:
        _add_bytes(tar, "oci-layout", _LAYOUT)
        _add_bytes(tar, "index.json", _index_json([_layout_entry(closure.root, tag)]))
        tar.addfile(_member("blobs", 0, directory=True))
        tar.addfile(_member("blobs/sha256", 0, directory=True))
        for node in closure.nodes:
            _add_bytes(tar, f"blobs/sha256/{node.manifest.digest.hex}", node.manifest.raw)
            report.manifests += 1
        for blob in contents:
            _add_blob(tar, reader, f"blobs/sha256/{blob.digest.hex}", blob)
            report.blobs += 1
            report.bytes += blob.size


# -- docker-archive ------------------------------------------------------------------------


def write_docker_archive(
    reader: BucketReader,
    image: Manifest,
    repo_tags: list[str],
    out: IO[bytes],
    report: ExportReport,
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
    for layer in layers:
        try:
            reader.locate(layer.digest, size=layer.size, thorough=True)
        except BlobNotFoundError as e:
            raise NotFoundError(
                f"layer {layer.digest} is not in the backup"
                + (
                    " (a foreign layer: docker-archive needs every layer)"
                    if layer.is_foreign
                    else ""
                )
            ) from e
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
            _add_blob(tar, reader, f"blobs/sha256/{blob.digest.hex}", blob)
            report.blobs += 1
            report.bytes += blob.size
        _add_bytes(tar, "manifest.json", json.dumps(manifest_json).encode())
    report.manifests = 1
