"""`make demo`: the backup's main job end to end, on loopback, with real parts.

Starts moto (S3, DynamoDB, ECR's repositories) and Debian's registry (S3 storage, 307
redirects to presigned URLs) behind the ECR-faithful proxy (expiring tokens, 201 on PATCH,
one PATCH per session, no mounts, unknown repositories refused: devkit/ecr_proxy.py),
pushes a multi-arch image with skopeo, delivers ECR's push events to
`ecr-backup handle-event`, pushes a second version sharing base layers, and shows what
was copied, skipped, and the bucket layout. Then it restores v1 into another repository
and checks that the digest is unchanged.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from devkit import (
    EcrRegistry,
    MotoServer,
    OciLayoutBuilder,
    sha256_digest,
    skopeo_inspect_raw,
    skopeo_push,
)
from devkit.events import sqs_record
from devkit.images import BuiltManifest
from ecr_backup.cli import main as ecr_backup

REPOSITORY = "demo/web"
ACCOUNT = "123456789012"


def push_events(built: BuiltManifest, tag: str) -> list[dict[str, object]]:
    """What ECR emits for a multi-arch push: one event per child, one for the index."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pushed = [(child.digest, None) for child in built.children] + [(built.digest, tag)]
    events: list[dict[str, object]] = []
    for digest, image_tag in pushed:
        detail: dict[str, object] = {
            "result": "SUCCESS",
            "repository-name": REPOSITORY,
            "image-digest": digest,
            "action-type": "PUSH",
            "manifest-media-type": built.media_type,
        }
        if image_tag:
            detail["image-tag"] = image_tag
        events.append(
            {
                "version": "0",
                "id": f"demo-{digest[7:19]}",
                "detail-type": "ECR Image Action",
                "source": "aws.ecr",
                "account": ACCOUNT,
                "time": now,
                "region": "us-east-1",
                "resources": [],
                "detail": detail,
            }
        )
    random.shuffle(events)  # ECR gives no order guarantee; the backup does not need one
    return events


def deliver(events: list[dict[str, object]], workdir: Path) -> None:
    """Deliver the events as the Lambda gets them: one SQS batch."""
    batch = {"Records": [sqs_record(event, f"msg-{i}") for i, event in enumerate(events)]}
    path = workdir / "sqs-batch.json"
    path.write_text(json.dumps(batch, indent=2))
    print(f"$ ecr-backup handle-event {path.name}   # {len(events)} ECR push events")
    code = ecr_backup(["handle-event", str(path)])
    if code != 0:
        raise SystemExit(f"demo: handle-event failed with exit code {code}")


def show_layout(moto: MotoServer, bucket: str) -> None:
    s3 = moto.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [(item["Key"], item["Size"]) for page in pages for item in page.get("Contents", [])]
    print(f"\ns3://{bucket}/ ({len(keys)} objects)")
    for key, size in keys:
        print(f"  {key:<110} {size:>9,} B")


def restore_round_trip(registry: EcrRegistry, v1: BuiltManifest) -> None:
    """What on-call does in a bad hour: look the tag up, restore it, check the digest."""
    registry.ensure_repository("restored/web")  # ECR refuses pushes to unknown repositories
    os.environ["ECR_BACKUP_TARGET_USERNAME"] = registry.username
    os.environ["ECR_BACKUP_TARGET_PASSWORD"] = registry.password or ""
    for args in (
        ["tags", REPOSITORY],
        ["history", f"{REPOSITORY}:v1"],
        ["restore", f"{REPOSITORY}:v1", "--to", f"{registry.url}/restored/web:v1"],
        ["verify", "--deep"],
    ):
        print(f"\n$ ecr-backup {' '.join(args)}")
        code = ecr_backup(args)
        if code != 0:
            raise SystemExit(f"demo: ecr-backup {args[0]} failed with exit code {code}")
    restored = sha256_digest(skopeo_inspect_raw(registry, "restored/web", "v1"))
    print(f"\nskopeo inspect --raw restored/web:v1 -> {restored}")
    print(f"original demo/web:v1                  -> {v1.digest}")
    if restored != v1.digest:
        raise SystemExit("demo: the restored digest differs from the original")


def main() -> None:
    with (
        MotoServer() as aws,
        MotoServer() as registry_storage,
        EcrRegistry(registry_storage, aws) as registry,
        tempfile.TemporaryDirectory(prefix="ecr-backup-demo-") as tmp,
    ):
        workdir = Path(tmp)
        bucket = "ecr-backup-demo"
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": aws.endpoint,
                "AWS_ACCESS_KEY_ID": "demo",
                "AWS_SECRET_ACCESS_KEY": "demo",
                "AWS_DEFAULT_REGION": aws.region,
                # ECR's API through the proxy: the tokens it hands out expire.
                "AWS_ENDPOINT_URL_ECR": registry.url,
                "ECR_BACKUP_BUCKET": bucket,
                "ECR_BACKUP_TABLE": "ecr-backup-demo",
                "ECR_BACKUP_SOURCE_REGISTRY": registry.url,
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        print(f"moto (S3, DynamoDB, ECR API): {aws.endpoint}")
        print(
            f"registry (ECR-faithful proxy in front of docker-registry: S3 storage, 307 "
            f"redirects, expiring tokens, ECR's upload quirks): {registry.url}\n"
        )
        print("$ ecr-backup setup")
        ecr_backup(["setup", "--no-tls-policy"])  # moto serves plain HTTP

        images = OciLayoutBuilder(workdir / "oci")
        v1 = images.multi_arch_image(ref="v1", layer_size=256 * 1024, seed=1)
        skopeo_push(images.path, "v1", registry, REPOSITORY, "v1")
        print(f"\npushed {REPOSITORY}:v1 ({v1.digest}, linux/amd64 + linux/arm64) with skopeo")
        deliver(push_events(v1, "v1"), workdir)

        v2_children = [
            images.extend(child, layer_size=64 * 1024, seed=10 + i)
            for i, child in enumerate(v1.children)
        ]
        v2 = images.index(v2_children, ref="v2")
        skopeo_push(images.path, "v2", registry, REPOSITORY, "v2")
        print(f"\npushed {REPOSITORY}:v2 ({v2.digest}): same base layers, one new layer per arch")
        v2_events = push_events(v2, "v2")
        deliver(v2_events, workdir)

        print("\nthe same v2 events delivered again (SQS is at-least-once): nothing is copied")
        deliver(v2_events, workdir)
        show_layout(aws, bucket)
        restore_round_trip(registry, v1)
    print("\ndemo: done; servers stopped")


if __name__ == "__main__":
    main()
