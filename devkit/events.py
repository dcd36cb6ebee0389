"""What ECR would send EventBridge about what is pushed through the devkit, and the SQS
records Lambda receives from the queue the EventBridge rule feeds.

The detail-types and fields follow the Amazon ECR User Guide, "Amazon ECR events and
EventBridge" (https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-eventbridge.html);
ecr_backup.backup.events parses them. EventBridge's `time` has whole seconds, as there.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devkit.images import BuiltManifest

DEFAULT_ACCOUNT = "123456789012"  # moto's


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class EcrEventSource:
    """ECR's events for one account and region's registry.

    - `pushed`: one event per manifest ECR stores, an index's children (untagged) before the
      index, as ECR does; a manifest with a `subject` (a signature, an SBOM) is a referrer
      and gets "ECR Referrer Action", so a referrer pushed after its image emits one;
    - `replicated`: what the destination region (or account) sends when a push into its
      registry stands for ECR's replication of this source's image;
    - `cached`: a pull through cache rule storing an upstream image;
    - `deleted`, `archived`, `restored`: DELETE and UPDATE_STORAGE_CLASS.
    """

    account: str = DEFAULT_ACCOUNT
    region: str = "us-east-1"
    clock: Callable[[], datetime] = field(default=_now)

    def pushed(
        self, built: BuiltManifest, repository: str, tag: str | None = None
    ) -> list[dict[str, Any]]:
        events = [event for child in built.children for event in self.pushed(child, repository)]
        kind = "ECR Referrer Action" if built.subject is not None else "ECR Image Action"
        detail = self._action("PUSH", built, repository, tag)
        return [*events, self.envelope(kind, detail)]

    def deleted(
        self, built: BuiltManifest, repository: str, tag: str | None = None
    ) -> dict[str, Any]:
        kind = "ECR Referrer Action" if built.subject is not None else "ECR Image Action"
        return self.envelope(kind, self._action("DELETE", built, repository, tag))

    def replicated(
        self,
        built: BuiltManifest,
        repository: str,
        tag: str | None = None,
        *,
        to_region: str,
        to_account: str | None = None,
    ) -> dict[str, Any]:
        destination = EcrEventSource(to_account or self.account, to_region, self.clock)
        detail: dict[str, Any] = {
            "result": "SUCCESS",
            "repository-name": repository,
            "image-digest": built.digest,
            "source-account": self.account,
            "action-type": "REPLICATE",
            "source-region": self.region,
        }
        if tag:
            detail["image-tag"] = tag
        return destination.envelope("ECR Replication Action", detail, repository)

    def cached(
        self,
        built: BuiltManifest,
        repository: str,
        tag: str,
        *,
        upstream: str = "public.ecr.aws",
    ) -> dict[str, Any]:
        detail = {
            "rule-version": "1",
            "sync-status": "SUCCESS",
            "ecr-repository-prefix": repository.split("/", 1)[0],
            "repository-name": repository,
            "upstream-registry-url": upstream,
            "image-tag": tag,
            "image-digest": built.digest,
        }
        return self.envelope("ECR Pull Through Cache Action", detail, repository)

    def archived(self, built: BuiltManifest, repository: str) -> dict[str, Any]:
        return self._storage_class(built, repository, "ARCHIVE")

    def restored(self, built: BuiltManifest, repository: str) -> dict[str, Any]:
        return self._storage_class(built, repository, "STANDARD")

    def envelope(
        self, detail_type: str, detail: dict[str, Any], repository: str | None = None
    ) -> dict[str, Any]:
        resources = (
            [f"arn:aws:ecr:{self.region}:{self.account}:repository/{repository}"]
            if repository
            else []
        )
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": "aws.ecr",
            "account": self.account,
            "time": self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": resources,
            "detail": detail,
        }

    def _action(
        self, action: str, built: BuiltManifest, repository: str, tag: str | None
    ) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "result": "SUCCESS",
            "repository-name": repository,
            "image-digest": built.digest,
            "action-type": action,
            "manifest-media-type": built.media_type,
        }
        if built.artifact_type:
            detail["artifact-media-type"] = built.artifact_type
        if tag:
            detail["image-tag"] = tag
        return detail

    def _storage_class(self, built: BuiltManifest, repository: str, target: str) -> dict[str, Any]:
        kind = "ECR Referrer Action" if built.subject is not None else "ECR Image Action"
        detail = {
            "action-type": "UPDATE_STORAGE_CLASS",
            "target-storage-class": target,
            "image-digest": built.digest,
            "repository-name": repository,
            "result": "SUCCESS",
            "manifest-media-type": built.media_type,
        }
        if built.config is not None:
            detail["artifact-media-type"] = built.config.media_type
        if target == "STANDARD":
            detail["last-activated-at"] = (
                self.clock().astimezone(UTC).isoformat().replace("+00:00", "Z")
            )
        return self.envelope(kind, detail)


def sqs_record(
    body: str | dict[str, Any],
    message_id: str | None = None,
    *,
    region: str = "us-east-1",
    account: str = DEFAULT_ACCOUNT,
) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    message_id = message_id or str(uuid.uuid4())
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1714557600000",
            "SenderId": "AIDAEVENTBRIDGE",
            "ApproximateFirstReceiveTimestamp": "1714557600001",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{region}:{account}:ecr-backup-EventQueue",
        "awsRegion": region,
    }
