"""`serve`: pull images straight from the backup, as they are now or were at --at."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from ecr_backup.cli.common import add_catalog_options, at_from, emit, services_from
from ecr_backup.errors import ExitCode, InvalidInputError
from ecr_backup.model import rfc3339
from ecr_backup.serve.auth import Htpasswd
from ecr_backup.serve.registry import Registry, ServeOptions
from ecr_backup.serve.server import RegistryServer, check_exposure, parse_listen, tls_context

DEFAULT_LISTEN = "127.0.0.1:5000"


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="a read-only registry (OCI Distribution API) over the backup",
        description="Serve the backup as a read-only registry that docker, podman, skopeo "
        "and Kubernetes pull from. Loopback only unless --htpasswd and TLS are given.",
    )
    serve.add_argument(
        "--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN, help=f"default {DEFAULT_LISTEN}"
    )
    serve.add_argument(
        "--repository-prefix", metavar="P", default="", help="serve only repositories named P..."
    )
    serve.add_argument(
        "--blobs",
        choices=("redirect", "stream"),
        default="redirect",
        help="redirect: 307 to presigned S3 URLs (clients need to reach S3); stream: the "
        "server sends the bytes itself (default redirect)",
    )
    serve.add_argument(
        "--htpasswd", metavar="FILE", help="require basic auth: bcrypt entries (htpasswd -B)"
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    serve.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    add_catalog_options(serve, at=True)
    serve.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    host, port = parse_listen(args.listen)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidInputError("--tls-cert and --tls-key go together")
    check_exposure(host, users=bool(args.htpasswd), tls=bool(args.tls_cert))
    options = ServeOptions(
        blobs=args.blobs,
        at=at_from(args),
        repository_prefix=args.repository_prefix,
        htpasswd=Htpasswd.load(args.htpasswd) if args.htpasswd else None,
    )
    tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    services = services_from(args)
    catalog = services.catalog(from_bucket=getattr(args, "from_bucket", False))
    registry = Registry(catalog, services.store, options)
    # Fail now, with the reason, if the backup cannot be read; and the first pull does not
    # pay for building the AWS clients.
    registry.catalog.repositories()
    try:
        server = RegistryServer((host, port), registry, tls=tls)
    except OSError as e:
        raise InvalidInputError(f"cannot listen on {args.listen}: {e.strerror}") from e
    when = f", tags as of {rfc3339(options.at)}" if options.at else ""
    document = {
        "url": server.url,
        "blobs": options.blobs,
        "at": options.at,
        "repository_prefix": options.repository_prefix,
        "authentication": "basic" if options.htpasswd else "none",
        "tls": tls is not None,
        "source": registry.catalog.source,
    }
    emit(args, document, [f"serving the backup at {server.url} (blobs: {options.blobs}{when})"])
    sys.stdout.flush()
    _stop_on_sigterm(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return ExitCode.OK


def _stop_on_sigterm(server: RegistryServer) -> None:
    """A service manager's stop ends the server as Ctrl-C does, with exit code 0."""
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
