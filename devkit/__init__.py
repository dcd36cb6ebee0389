"""Local stand-ins for AWS (moto) and a container registry (CNCF distribution, behind an
ECR-faithful proxy),
plus OCI image generation, for tests, demos and benchmarks."""

from devkit.ecr_control import EcrControlPlane
from devkit.ecr_proxy import EcrQuirks, EcrRegistry
from devkit.images import (
    BuiltManifest,
    Descriptor,
    Layer,
    OciLayoutBuilder,
    http_push,
    http_push_manifest,
    random_layer,
    sha256_digest,
    skopeo_inspect_raw,
    skopeo_push,
    write_random_layer,
)
from devkit.net import free_port
from devkit.servers import (
    LocalRegistry,
    LoggedRequest,
    MotoServer,
    Registry,
    ecr_password_from_moto,
)
from devkit.token_auth import TokenServer

__all__ = [
    "BuiltManifest",
    "Descriptor",
    "EcrControlPlane",
    "EcrQuirks",
    "EcrRegistry",
    "Layer",
    "LocalRegistry",
    "LoggedRequest",
    "MotoServer",
    "OciLayoutBuilder",
    "Registry",
    "TokenServer",
    "ecr_password_from_moto",
    "free_port",
    "http_push",
    "http_push_manifest",
    "random_layer",
    "sha256_digest",
    "skopeo_inspect_raw",
    "skopeo_push",
    "write_random_layer",
]
