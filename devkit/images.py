"""Generate OCI image layouts on disk and push them to a Registry.

Everything is deterministic for a given seed, so digests are reproducible and
tests can compare what the registry (or a backup) holds with what was built.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import quote, urljoin

import urllib3

from devkit.ecr_control import EcrControlPlane

if TYPE_CHECKING:
    from devkit.servers import Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
COSIGN_SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"

_REF_NAME = "org.opencontainers.image.ref.name"
# Bigger copy buffer than tarfile's 16 KiB default: fewer Python-level loops for 1 GiB.
_CHUNK = 1 << 20


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- layers ---------------------------------------------------------------------


class _RandomReader:
    """File-like source of `size` deterministic random (incompressible) bytes."""

    def __init__(self, size: int, seed: int) -> None:
        self._rng = random.Random(seed)
        self._left = size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        self._left -= n
        return self._rng.randbytes(n)


class _HashingWriter:
    """Write-through sink that hashes and counts the bytes passing by."""

    def __init__(self, sink: IO[bytes] | gzip.GzipFile) -> None:
        self._sink = sink
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def tell(self) -> int:  # TarFile asks where it starts
        return self.size

    def flush(self) -> None:
        self._sink.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self._sha.hexdigest()


@dataclass(frozen=True)
class _LayerStats:
    digest: str  # of the gzip blob
    size: int
    diff_id: str  # digest of the uncompressed tar (goes into the image config)


def _write_layer(out: IO[bytes], size: int, seed: int, compresslevel: int) -> _LayerStats:
    compressed = _HashingWriter(out)
    # mtime=0 and no file name in the gzip header keep the output deterministic.
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=compressed, compresslevel=compresslevel, mtime=0
    ) as gz:
        uncompressed = _HashingWriter(gz)
        info = tarfile.TarInfo(f"random-{seed}.bin")
        info.size = size
        info.mode = 0o644
        info.mtime = 0
        # In "w" mode TarFile only calls write() and tell(), all _HashingWriter has.
        tar_out = cast(IO[bytes], uncompressed)
        with tarfile.TarFile(fileobj=tar_out, mode="w", copybufsize=_CHUNK) as tar:
            tar.addfile(info, _RandomReader(size, seed))
    return _LayerStats(compressed.digest, compressed.size, uncompressed.digest)


def random_layer(size: int, seed: int, *, compresslevel: int = 0) -> bytes:
    """A gzip'd tar holding one file of `size` random bytes, deterministic per seed.

    compresslevel 0 (stored deflate blocks) is still valid gzip; the content is
    incompressible anyway and real compression would cost ~20 s per GiB.
    """
    buf = io.BytesIO()
    _write_layer(buf, size, seed, compresslevel)
    return buf.getvalue()


def write_random_layer(
    path: Path | str, size: int, seed: int, *, compresslevel: int = 0
) -> tuple[str, int]:
    """Stream `random_layer(size, seed)` to `path` in constant memory; returns
    (digest, compressed size)."""
    with open(path, "wb") as out:
        stats = _write_layer(out, size, seed, compresslevel)
    return stats.digest, stats.size


# --- descriptors and built manifests --------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, str] | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            obj["platform"] = self.platform
        if self.artifact_type is not None:
            obj["artifactType"] = self.artifact_type
        return obj


@dataclass(frozen=True)
class Layer:
    descriptor: Descriptor
    diff_id: str


@dataclass(frozen=True)
class BuiltManifest:
    """A manifest (image, index or artifact) written into an OCI layout."""

    ref: str  # its name in the layout's index.json, what skopeo_push takes
    media_type: str
    manifest: bytes  # exact bytes; their sha256 is `digest`
    digest: str
    config: Descriptor | None = None
    layers: tuple[Layer, ...] = ()
    children: tuple[BuiltManifest, ...] = ()  # for an index
    platform: dict[str, str] | None = None
    artifact_type: str | None = None
    subject: Descriptor | None = None

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(
            self.media_type, self.digest, len(self.manifest), self.platform, self.artifact_type
        )

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config and layer descriptors, own and children's, deduplicated, in order."""
        own = ([self.config] if self.config else []) + [layer.descriptor for layer in self.layers]
        seen: dict[str, Descriptor] = {}
        for desc in own + [b for child in self.children for b in child.blobs]:
            seen.setdefault(desc.digest, desc)
        return tuple(seen.values())

    @property
    def manifests(self) -> tuple[BuiltManifest, ...]:
        """This manifest and, for an index, its children."""
        return (self, *self.children)


@dataclass
class OciLayoutBuilder:
    """Builds manifests into an OCI image layout directory (created if missing).

    Every built manifest is tagged in index.json (under `ref`, or a name derived
    from its digest) so skopeo can address it as oci:DIR:REF.
    """

    path: Path
    _refs: dict[str, Descriptor] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._write_index()

    # blobs

    def blob_path(self, digest: str) -> Path:
        return self.path / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        desc = Descriptor(media_type, sha256_digest(data), len(data))
        self.blob_path(desc.digest).write_bytes(data)
        return desc

    def add_layer(self, size: int, seed: int, *, docker: bool = False) -> Layer:
        """A random layer of ~`size` bytes, streamed to disk (fine for GiB sizes)."""
        fd, tmp = tempfile.mkstemp(dir=self.path / "blobs")
        with os.fdopen(fd, "wb") as out:
            stats = _write_layer(out, size, seed, compresslevel=0)
        os.replace(tmp, self.blob_path(stats.digest))
        media_type = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
        return Layer(Descriptor(media_type, stats.digest, stats.size), stats.diff_id)

    # manifests

    def image(
        self,
        layers: Sequence[Layer],
        *,
        ref: str | None = None,
        docker: bool = False,
        os_name: str = "linux",
        architecture: str = "amd64",
    ) -> BuiltManifest:
        """A single-platform image; `docker=True` gives Docker v2 schema 2 media types."""
        platform = {"architecture": architecture, "os": os_name}
        config_json = {
            **platform,
            "created": "1970-01-01T00:00:00Z",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        }
        config = self.add_blob(
            _canonical_json(config_json), DOCKER_CONFIG if docker else OCI_CONFIG
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.descriptor.to_json() for layer in layers],
        }
        return self._add_manifest(
            manifest, ref, config=config, layers=tuple(layers), platform=platform
        )

    def simple_image(
        self,
        *,
        ref: str | None = None,
        n_layers: int = 2,
        layer_size: int = 4096,
        seed: int = 0,
        docker: bool = False,
        architecture: str = "amd64",
    ) -> BuiltManifest:
        """An image with `n_layers` random layers seeded seed, seed+1, ..."""
        layers = [self.add_layer(layer_size, seed + i, docker=docker) for i in range(n_layers)]
        return self.image(layers, ref=ref, docker=docker, architecture=architecture)

    def extend(
        self, base: BuiltManifest, *, ref: str | None = None, layer_size: int = 4096, seed: int
    ) -> BuiltManifest:
        """`base`'s layers plus one new random layer (images sharing base layers)."""
        docker = base.media_type == DOCKER_MANIFEST
        new = self.add_layer(layer_size, seed, docker=docker)
        platform = base.platform or {}
        return self.image(
            [*base.layers, new],
            ref=ref,
            docker=docker,
            os_name=platform.get("os", "linux"),
            architecture=platform.get("architecture", "amd64"),
        )

    def index(
        self, children: Sequence[BuiltManifest], *, ref: str | None = None, docker: bool = False
    ) -> BuiltManifest:
        """An image index (or Docker manifest list) over already-built images."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST if docker else OCI_INDEX,
            "manifests": [child.descriptor.to_json() for child in children],
        }
        return self._add_manifest(manifest, ref, children=tuple(children))

    def multi_arch_image(
        self,
        *,
        ref: str | None = None,
        architectures: Sequence[str] = ("amd64", "arm64"),
        layer_size: int = 4096,
        seed: int = 0,
        docker: bool = False,
    ) -> BuiltManifest:
        """An index with one single-layer linux image per architecture."""
        children = [
            self.simple_image(
                n_layers=1, layer_size=layer_size, seed=seed + i, docker=docker, architecture=arch
            )
            for i, arch in enumerate(architectures)
        ]
        return self.index(children, ref=ref, docker=docker)

    def artifact(
        self,
        subject: BuiltManifest,
        *,
        ref: str | None = None,
        artifact_type: str | None = COSIGN_SIGNATURE_ARTIFACT,
        config_media_type: str = OCI_EMPTY,
        payload: bytes = b'{"critical":{"type":"cosign container image signature"}}',
        payload_media_type: str = COSIGN_SIMPLESIGNING,
    ) -> BuiltManifest:
        """An OCI 1.1-style artifact (a fake signature) whose `subject` is `subject`.

        Defaults follow OCI 1.1: artifactType set and the empty "{}" config; pass
        config_media_type=COSIGN_SIGNATURE_ARTIFACT, artifact_type=None for the
        older "type in the config media type" style.
        """
        config = self.add_blob(b"{}", config_media_type)
        layer = self.add_blob(payload, payload_media_type)
        manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
        if artifact_type is not None:
            manifest["artifactType"] = artifact_type
        manifest["config"] = config.to_json()
        manifest["layers"] = [layer.to_json()]
        # The subject descriptor carries no platform: it points at a manifest, not
        # an index entry.
        subject_desc = Descriptor(subject.media_type, subject.digest, len(subject.manifest))
        manifest["subject"] = subject_desc.to_json()
        return self._add_manifest(
            manifest,
            ref,
            config=config,
            layers=(Layer(layer, layer.digest),),  # not a tar: diff_id is meaningless
            artifact_type=artifact_type,
            subject=subject_desc,
        )

    def tag(self, ref: str, built: BuiltManifest) -> None:
        """Point `ref` in index.json at `built` (replacing any previous target)."""
        self._refs[ref] = built.descriptor
        self._write_index()

    def _add_manifest(self, manifest: dict[str, Any], ref: str | None, **kw: Any) -> BuiltManifest:
        data = _canonical_json(manifest)
        digest = self.add_blob(data, manifest["mediaType"]).digest
        ref = ref or "m-" + digest.removeprefix("sha256:")[:16]
        built = BuiltManifest(
            ref=ref, media_type=manifest["mediaType"], manifest=data, digest=digest, **kw
        )
        self.tag(ref, built)
        return built

    def _write_index(self) -> None:
        manifests = []
        for ref, desc in self._refs.items():
            # platform in index.json would make skopeo filter; keep just the ref.
            obj = Descriptor(desc.media_type, desc.digest, desc.size).to_json()
            obj["annotations"] = {_REF_NAME: ref}
            manifests.append(obj)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        (self.path / "index.json").write_text(json.dumps(index, indent=2))


# --- pushing and reading ----------------------------------------------------------


def _creds_args(registry: Registry, flag: str) -> list[str]:
    password = registry.password  # read once: the ECR proxy issues a new token each time
    if password is None:
        return [f"--{flag}no-creds"]
    return [f"--{flag}creds", f"{registry.username}:{password}"]


def _registry_ref(registry: Registry, repository: str, ref: str) -> str:
    sep = "@" if ref.startswith("sha256:") else ":"
    return f"docker://{registry.host}/{repository}{sep}{ref}"


def _layout_entry(layout_dir: Path, ref: str) -> dict[str, Any]:
    index = json.loads((layout_dir / "index.json").read_text())
    for desc in index["manifests"]:
        if desc.get("annotations", {}).get(_REF_NAME) == ref:
            entry: dict[str, Any] = desc
            return entry
    raise KeyError(f"{ref!r} not in {layout_dir}/index.json")


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(argv, capture_output=True, timeout=600, check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{stderr}")
    return result


def skopeo_push(
    layout_dir: Path | str,
    ref_in_layout: str,
    registry: Registry,
    repository: str,
    tag: str | None = "latest",
    *,
    all_platforms: bool = True,
) -> str:
    """`skopeo copy` oci:DIR:REF to the registry, keeping digests; returns the
    pushed manifest digest. `tag=None` pushes by digest (no tag)."""
    layout_dir = Path(layout_dir)
    entry = _layout_entry(layout_dir, ref_in_layout)
    if entry["mediaType"] not in (OCI_MANIFEST, OCI_INDEX):
        # skopeo 1.9.3's oci: transport skips non-OCI index.json entries ("no
        # descriptor found for reference").
        raise ValueError(
            f"skopeo cannot push {entry['mediaType']} from an OCI layout; use http_push"
        )
    dest_ref = tag if tag is not None else entry["digest"]
    registry.ensure_repository(repository)
    with tempfile.TemporaryDirectory(prefix="devkit-skopeo-") as tmp:
        digestfile = Path(tmp) / "digest"
        _run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--retry-times=3",  # a throttled push (429) is tried again, as on ECR
                # --all: copy every platform of an index, not just the host's.
                "--all" if all_platforms else "--multi-arch=system",
                "--preserve-digests",
                "--dest-tls-verify=false",
                *_creds_args(registry, "dest-"),
                "--digestfile",
                str(digestfile),
                f"oci:{layout_dir}:{ref_in_layout}",
                _registry_ref(registry, repository, dest_ref),
            ]
        )
        pushed = digestfile.read_text().strip()
    ecr = _registered_by_the_devkit(registry)
    if ecr is not None:
        _register_from_layout(layout_dir, pushed, ecr, repository, tag)
    return pushed


def control_plane(registry: Registry) -> EcrControlPlane | None:
    """The ECR API the devkit keeps in agreement with `registry`: the moto behind an
    ECR-faithful proxy (the one it answers tokens for), or a LocalRegistry's `ecr`."""
    from devkit.ecr_proxy import EcrRegistry

    if isinstance(registry, EcrRegistry):
        return EcrControlPlane(registry.aws)
    ecr: EcrControlPlane | None = getattr(registry, "ecr", None)
    return ecr


def _registered_by_the_devkit(registry: Registry) -> EcrControlPlane | None:
    """The ECR API a push must be registered with by hand: a LocalRegistry's `ecr`. The
    ECR proxy registers every push that goes through it itself."""
    ecr: EcrControlPlane | None = getattr(registry, "ecr", None)
    return ecr


def _register_from_layout(
    layout_dir: Path, pushed: str, ecr: EcrControlPlane, repository: str, tag: str | None
) -> None:
    """Register what skopeo pushed with ECR's API: an index's children first (untagged, as
    they were pushed by digest), then the tagged root."""
    blobs = layout_dir / "blobs" / "sha256"
    root = (blobs / pushed.removeprefix("sha256:")).read_bytes()
    document = json.loads(root)
    media_type = document.get("mediaType", OCI_MANIFEST)
    for child in document.get("manifests", []):
        path = blobs / child["digest"].removeprefix("sha256:")
        ecr.register(repository, path.read_bytes(), child["mediaType"])
    ecr.register(repository, root, media_type, tag)


def skopeo_inspect_raw(registry: Registry, repository: str, ref: str) -> bytes:
    """The manifest bytes the registry serves for `ref` (tag or "sha256:..." digest)."""
    return _run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--retry-times=3",
            "--tls-verify=false",
            *_creds_args(registry, ""),
            _registry_ref(registry, repository, ref),
        ]
    ).stdout


_HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=60.0), retries=False)


def _expect(response: urllib3.BaseHTTPResponse, status: int, what: str) -> None:
    if response.status != status:
        raise RuntimeError(f"{what}: HTTP {response.status} {response.data[:500]!r}")


def http_push_manifest(
    registry: Registry,
    repository: str,
    ref: str,
    manifest: bytes,
    media_type: str,
    blobs: Mapping[str, bytes | Path],
) -> str:
    """Push blobs (digest -> bytes, or a file to stream; monolithic uploads, skipping
    existing ones) and then the manifest under `ref` via the plain registry API;
    returns the digest the registry reports."""
    base = f"{registry.url}/v2/{repository}"
    registry.ensure_repository(repository)
    headers = registry.auth_headers
    for digest, data in blobs.items():
        head = _HTTP.request("HEAD", f"{base}/blobs/{digest}", headers=headers)
        if head.status in (200, 307):  # 307: a redirecting registry has it
            continue
        start = _HTTP.request("POST", f"{base}/blobs/uploads/", headers=headers)
        _expect(start, 202, f"start upload of {digest}")
        location = urljoin(registry.url, start.headers["Location"])
        sep = "&" if "?" in location else "?"
        upload_headers = {**headers, "Content-Type": "application/octet-stream"}
        with contextlib.ExitStack() as stack:
            if isinstance(data, Path):
                upload_headers["Content-Length"] = str(data.stat().st_size)
                body: bytes | IO[bytes] = stack.enter_context(data.open("rb"))
            else:
                body = data
            put = _HTTP.request(
                "PUT", f"{location}{sep}digest={quote(digest)}", body=body, headers=upload_headers
            )
        _expect(put, 201, f"upload of {digest}")
    put = _HTTP.request(
        "PUT",
        f"{base}/manifests/{ref}",
        body=manifest,
        headers={**headers, "Content-Type": media_type},
    )
    _expect(put, 201, f"manifest PUT {repository}:{ref}")
    ecr = _registered_by_the_devkit(registry)
    if ecr is not None:
        ecr.register(repository, manifest, media_type, None if ref.startswith("sha256:") else ref)
    return put.headers["Docker-Content-Digest"]


def http_push(
    layout: OciLayoutBuilder,
    built: BuiltManifest,
    registry: Registry,
    repository: str,
    tag: str | None = "latest",
) -> str:
    """Push `built` (children first, for an index) from `layout` with plain HTTP.

    Works for every media type, including the Docker ones skopeo can't read
    from an OCI layout. `tag=None` pushes by digest.
    """
    for child in built.children:
        http_push(layout, child, registry, repository, None)
    own = ([built.config] if built.config else []) + [layer.descriptor for layer in built.layers]
    blobs: dict[str, bytes | Path] = {d.digest: layout.blob_path(d.digest) for d in own}
    return http_push_manifest(
        registry, repository, tag or built.digest, built.manifest, built.media_type, blobs
    )


@dataclass(frozen=True)
class GeneratedImage:
    """An image whose one layer is generated (devkit.moto_server): big, but never uploaded."""

    digest: str
    manifest: bytes
    config: bytes
    layer: Descriptor


def push_generated_image(
    registry: Registry, repository: str, tag: str, *, layer_size: int, seed: int
) -> GeneratedImage:
    """Push an image with a `layer_size`-byte layer that costs one hash, not an upload.

    The layer is put straight into the registry's storage as distribution lays it out
    (the blob's data, and the link that makes it part of `repository`); config and
    manifest go through the registry API, which checks the layer is there. Through the
    ECR proxy, the push is registered with moto's ECR like any other.
    """
    from devkit.moto_server import generated_digest

    layer_digest = generated_digest(layer_size, seed)
    hex_ = layer_digest.removeprefix("sha256:")
    registry.storage.put_generated(
        registry.storage_bucket, registry.blob_data_key(layer_digest), layer_size, seed
    )
    registry.storage.client("s3").put_object(
        Bucket=registry.storage_bucket,
        Key=f"docker/registry/v2/repositories/{repository}/_layers/sha256/{hex_}/link",
        Body=layer_digest.encode(),
    )
    config = _canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    )
    layer = Descriptor(OCI_LAYER_GZIP, layer_digest, layer_size)
    config_descriptor = Descriptor(OCI_CONFIG, sha256_digest(config), len(config))
    manifest = _canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_descriptor.to_json(),
            "layers": [layer.to_json()],
        }
    )
    digest = http_push_manifest(
        registry, repository, tag, manifest, OCI_MANIFEST, {config_descriptor.digest: config}
    )
    return GeneratedImage(digest, manifest, config, layer)
