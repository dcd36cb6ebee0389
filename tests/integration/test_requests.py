"""How many AWS requests a fresh `ecr-backup replicate` process makes, counted at a proxy in
front of the AWS stand-ins (docs/bench.md): the ceilings of issue 19, per push kind.
The source registry's own reads (manifest and blob GETs, not AWS API calls) go to it
directly and are not counted here; tests/integration/test_backup.py counts those."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devkit import EcrRegistry, MotoServer, OciLayoutBuilder, skopeo_push
from devkit.counting_proxy import CountingProxy
from tests.integration.conftest import BackupTarget
from tests.integration.test_backup import ecr_event

pytestmark = pytest.mark.integration

# What a replay or an incremental push may ask of AWS, STS, ECR and the index's location
# check included; a replay writes nothing at all.
REPLAY_CEILING = 6
INCREMENTAL_CEILING = 15
WRITES = {
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "PutObject",
    "PutObjectRetention",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
}


@dataclass
class Counted:
    aws: CountingProxy
    ecr: CountingProxy
    target: BackupTarget

    def replicate(self, image: str) -> Counter[tuple[str, str]]:
        return self.cli("replicate", image, "--quiet")

    def handle_event(self, event: dict[str, object]) -> Counter[tuple[str, str]]:
        """What the Lambda does with one event, in a fresh process (a cold Lambda)."""
        return self.cli("handle-event", "-", "--quiet", stdin=json.dumps(event))

    def cli(self, *args: str, stdin: str | None = None) -> Counter[tuple[str, str]]:
        self.aws.reset()
        self.ecr.reset()
        done = self.target.cli(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return self.aws.counts() + self.ecr.counts()


@pytest.fixture
def counted(
    backup_target: BackupTarget, moto_server: MotoServer, registry: EcrRegistry
) -> Iterator[Counted]:
    with CountingProxy(moto_server.endpoint) as aws, CountingProxy(registry.url) as ecr:
        backup_target.env["AWS_ENDPOINT_URL"] = aws.endpoint
        backup_target.env["AWS_ENDPOINT_URL_ECR"] = ecr.endpoint
        yield Counted(aws, ecr, backup_target)


def writes(counts: Counter[tuple[str, str]]) -> dict[str, int]:
    return {f"{s}:{op}": n for (s, op), n in counts.items() if op in WRITES}


def test_requests_per_push_first_incremental_and_replay(
    counted: Counted, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    repo = "lean/app"
    base = oci_images.simple_image(ref="v1", n_layers=10, layer_size=20_000, seed=19)
    skopeo_push(oci_images.path, "v1", registry, repo, "v1")
    newer = oci_images.extend(base, ref="v2", layer_size=10_000, seed=20)
    skopeo_push(oci_images.path, "v2", registry, repo, "v2")

    first = counted.replicate(f"{repo}:v1")
    incremental = counted.replicate(f"{repo}:v2")
    by_tag = counted.replicate(f"{repo}:v2")
    # The first run by digest records an untagged push (a history row of its own); the
    # second one is its replay.
    counted.replicate(f"{repo}@{newer.digest}")
    replays = {"by tag": by_tag, "by digest": counted.replicate(f"{repo}@{newer.digest}")}
    report = {"first push": first, "incremental push": incremental}
    report |= {f"replay {how}": counts for how, counts in replays.items()}
    for name, counts in report.items():
        print(f"{name}: {sum(counts.values())} {dict(sorted(counts.items()))}")

    for how, counts in replays.items():
        assert writes(counts) == {}, how
        assert sum(counts.values()) <= REPLAY_CEILING, (how, sorted(counts.items()))
    assert sum(incremental.values()) <= INCREMENTAL_CEILING, sorted(incremental.items())
    # Only what is new is written: two objects and the manifest, its record, its history.
    assert writes(incremental) == {
        "s3:PutObject": 4,
        "dynamodb:TransactWriteItems": 1,
        "dynamodb:PutItem": 2,
        "dynamodb:UpdateItem": 1,
    }


def test_requests_per_event_as_the_lambda_handles_it(
    counted: Counted, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> None:
    repo = "lean/event"
    base = oci_images.simple_image(ref="v1", n_layers=10, layer_size=20_000, seed=21)
    first = skopeo_push(oci_images.path, "v1", registry, repo, "v1")
    oci_images.extend(base, ref="v2", layer_size=10_000, seed=22)
    second = skopeo_push(oci_images.path, "v2", registry, repo, "v2")

    counted.handle_event(ecr_event(repo, first, "v1"))
    pushed = ecr_event(repo, second, "v2")
    incremental = counted.handle_event(pushed)
    replay = counted.handle_event(pushed)  # EventBridge delivers it again
    for name, counts in (("incremental", incremental), ("replay", replay)):
        print(f"event, {name}: {sum(counts.values())} {dict(sorted(counts.items()))}")

    # A cold Lambda also asks for the ECR token and the index's location; a warm one not.
    assert writes(replay) == {}
    assert sum(replay.values()) <= REPLAY_CEILING, sorted(replay.items())
    assert sum(incremental.values()) <= INCREMENTAL_CEILING, sorted(incremental.items())
