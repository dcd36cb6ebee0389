"""`python -m devkit up`: the stand-ins for people, until Ctrl-C.

Starts, on 127.0.0.1, moto (S3, DynamoDB, ECR's API) and Debian's registry (S3 storage on a
second moto) behind the ECR-faithful proxy, prints the environment to export, and stops
everything on Ctrl-C or SIGTERM. Whatever is pushed through the proxy (skopeo, podman, the
devkit's helpers) is registered with ECR's API, so `ecr-backup backfill` and reconcile see
it. Tokens last 12 hours, as ECR's do.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devkit.ecr_proxy import EcrQuirks, EcrRegistry
from devkit.servers import DUMMY_ACCESS_KEY, DUMMY_SECRET_KEY, MotoServer

ECR_TOKEN_LIFETIME_S = 12 * 3600


def environment(aws: MotoServer, registry: EcrRegistry, name: str) -> dict[str, str]:
    """What `ecr-backup` (and the AWS CLI) need to use the stand-ins."""
    return {
        "AWS_ENDPOINT_URL": aws.endpoint,
        # ECR's API through the proxy: it hands out the registry's tokens.
        "AWS_ENDPOINT_URL_ECR": registry.url,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
        "AWS_DEFAULT_REGION": aws.region,
        "ECR_BACKUP_SOURCE_REGISTRY": registry.url,
        "ECR_BACKUP_BUCKET": name,
        "ECR_BACKUP_TABLE": name,
    }


def up(name: str, env_file: Path | None) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with (
            MotoServer() as aws,
            MotoServer() as registry_storage,
            EcrRegistry(
                registry_storage, aws, quirks=EcrQuirks(token_lifetime_s=ECR_TOKEN_LIFETIME_S)
            ) as registry,
        ):
            env = environment(aws, registry, name)
            exports = "".join(f"export {key}={value}\n" for key, value in env.items())
            if env_file is not None:
                env_file.write_text(exports)
            print(exports, end="")
            print(
                f"# moto (S3, DynamoDB, ECR's API): {aws.endpoint}\n"
                f"# registry (ECR-faithful proxy, plain HTTP): {registry.host}\n"
                "# create a repository, then push, e.g.:\n"
                "#   aws ecr create-repository --repository-name team/app\n"
                f'#   skopeo login --tls-verify=false -u AWS -p "$(aws ecr get-login-password)" '
                f"{registry.host}\n"
                f"#   skopeo copy --dest-tls-verify=false oci:DIR:TAG "
                f"docker://{registry.host}/team/app:TAG\n"
                "#   ecr-backup setup --no-tls-policy && ecr-backup backfill\n"
                "# Ctrl-C stops everything.",
                flush=True,
            )
            stop.wait()
            print("stopping", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the stand-ins; print the environment")
    start.add_argument(
        "--name",
        default="ecr-backup-dev",
        help="bucket and table name to export (default %(default)s)",
    )
    start.add_argument("--env-file", type=Path, help="also write the exports to this file")
    args = parser.parse_args(argv)
    up(args.name, args.env_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
