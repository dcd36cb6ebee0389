"""HTTP connections to registries: certificate checks as the user asked.

The CA bundle is the explicit option, else SSL_CERT_FILE, else AWS_CA_BUNDLE (which the
AWS CLI and boto3 honour), else the system's store. `insecure` skips verification, as
skopeo's --tls-verify=false and crane's --insecure do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import urllib3

from ecr_backup.errors import ConfigurationError
from ecr_backup.settings import (
    REGISTRY_CONNECT_TIMEOUT_S,
    REGISTRY_MAX_CONNECTIONS_PER_HOST,
    REGISTRY_READ_TIMEOUT_S,
)


@dataclass(frozen=True)
class TlsOptions:
    insecure: bool = False
    ca_bundle: str | None = None

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        insecure: bool = False,
        ca_bundle: str | None = None,
    ) -> TlsOptions:
        environ = os.environ if environ is None else environ
        bundle = ca_bundle or environ.get("SSL_CERT_FILE") or environ.get("AWS_CA_BUNDLE") or None
        if bundle and not Path(bundle).is_file():
            raise ConfigurationError(f"CA bundle {bundle} is not a readable file")
        return cls(insecure=insecure, ca_bundle=bundle)

    def pool_manager(self) -> urllib3.PoolManager:
        """A pool for registry requests (no urllib3 retries: the client retries itself);
        its timeouts bound each read, not a transfer (settings.py says why these)."""
        tls: dict[str, str] = {}
        if self.insecure:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            tls["cert_reqs"] = "CERT_NONE"
        elif self.ca_bundle:
            tls["ca_certs"] = self.ca_bundle
        return urllib3.PoolManager(
            maxsize=REGISTRY_MAX_CONNECTIONS_PER_HOST,
            timeout=urllib3.Timeout(
                connect=REGISTRY_CONNECT_TIMEOUT_S, read=REGISTRY_READ_TIMEOUT_S
            ),
            retries=False,
            **tls,  # type: ignore[arg-type]
        )
