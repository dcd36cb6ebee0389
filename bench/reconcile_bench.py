"""Reconcile benchmark: 10,000 images in 200 repositories, all already backed up, against
the moto server playing ECR's control plane and the backup's AWS.

Set-up (not measured): every image is registered with moto's ECR (PutImage, 8 at once),
and the index is written as `record_event` and `mark_complete` write it, but in
BatchWriteItem calls: the calls are captured from the index itself (see _CapturingClient),
so the items are exactly the engine's, at a fraction of the requests.

Measured, in the same process and alternating:
* reconcile: `Backfill(...).run()`, the code `ecr-backup backfill` runs, with every AWS
  call counted by operation (a botocore `before-call` hook) and the registry's request log
  read before and after;
* baseline: listing alone, DescribeRepositories and DescribeImages of every repository
  (the least any reconcile must do), so that the index's share shows as a ratio.

`run_bench(ctx)` is what bench.run calls; `python -m bench.reconcile_bench` runs it alone.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    BENCH_QUIRKS,
    BenchContext,
    Row,
    config_only_manifest,
    markdown_table,
)
from devkit.images import OCI_MANIFEST

REPOSITORIES = 200
IMAGES_PER_REPOSITORY = 50
ACCOUNT = "123456789012"  # moto's default


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class _CapturingClient:
    """Stands in for the DynamoDB client while set-up records images into a fresh table:
    keeps the items the index writes, for BatchWriteItem. Only the two writes a first
    push makes are understood; anything else stops the benchmark (an index change must
    be looked at, not silently mis-copied)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_item(self, **call: Any) -> dict[str, Any]:
        self.items.append(call["Item"])
        return {}

    def update_item(self, **call: Any) -> dict[str, Any]:
        if call.get("UpdateExpression") != "SET #t = if_not_exists(#t, :t)":
            raise RuntimeError(f"bench set-up does not know this index write: {call}")
        item = {**call["Key"], "time": call["ExpressionAttributeValues"][":t"]}
        self.items.append(item)
        return {"Attributes": item}


def _register_in_ecr(ecr: Any, repositories: list[str]) -> None:
    def put(repository: str) -> None:
        ecr.create_repository(repositoryName=repository)
        for n in range(IMAGES_PER_REPOSITORY):
            manifest = config_only_manifest(f"{repository}/{n}")
            ecr.put_image(
                repositoryName=repository,
                imageManifest=manifest.decode(),
                imageManifestMediaType=OCI_MANIFEST,
                imageTag=f"v{n}",
                imageDigest="sha256:" + hashlib.sha256(manifest).hexdigest(),
            )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, repositories))


def _index_as_backed_up(ecr: Any, dynamodb: Any, table: str, repositories: list[str]) -> int:
    """Write, for every image ECR lists, what a backup of it leaves in the index."""
    from ecr_backup.model import Action, ImageEvent, ManifestRecord
    from ecr_backup.oci.digest import Digest
    from ecr_backup.registry.ecr_listing import EcrListing
    from ecr_backup.storage.index import DynamoIndex

    capture = _CapturingClient()
    index = DynamoIndex(table, client=capture)  # type: ignore[arg-type]
    listing = EcrListing(ecr, ACCOUNT)
    now = datetime.now(UTC)
    for repository in repositories:
        for image in listing.images(repository) or []:
            digest = Digest.parse(str(image.digest))
            index.mark_complete(ManifestRecord(digest, OCI_MANIFEST, 300, 300, now))
            for tag in image.tags:
                index.record_event(
                    ImageEvent(repository, digest, Action.PUSH, image.pushed_at, tag, OCI_MANIFEST)
                )
    unique = {(i["pk"]["S"], i["sk"]["S"]): i for i in capture.items}
    items = list(unique.values())

    def write(start: int) -> None:
        pending: Any = {table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(0, len(items), 25)))
    return len(items)


@dataclass(frozen=True)
class Measured:
    seconds: float
    calls: Counter[str]
    registry_requests: int
    query_seconds: float = 0.0  # inside moto's Query, which reads the whole table


@dataclass(frozen=True)
class ReconcileResults:
    images: int
    repositories: int
    reconciles: list[Measured]
    listings: list[Measured]
    drift_found: bool

    def per_100(self, operation: str) -> float:
        return self.reconciles[-1].calls[operation] * 100 / self.images

    def rows(self) -> list[Row]:
        n = len(self.reconciles)
        of = f" (median of {n})" if n > 1 else ""
        reconcile_s = statistics.median(m.seconds for m in self.reconciles)
        listing_s = statistics.median(m.seconds for m in self.listings)
        calls = self.reconciles[-1].calls
        describe = calls["ecr.DescribeImages"]
        batch_get = calls["dynamodb.BatchGetItem"]
        s3_gets = sum(v for k, v in calls.items() if k in ("s3.GetObject", "s3.HeadObject"))
        registry = max(m.registry_requests for m in self.reconciles)
        size = f"{self.images:,} images in {self.repositories} repositories, all held"
        query_s = statistics.median(m.query_seconds for m in self.reconciles)
        queries = calls["dynamodb.Query"]
        return [
            Row(f"Reconcile wall time, {size}{of}", f"{reconcile_s:.1f} s"),
            Row(
                f"... of which inside moto's Query ({queries} calls; moto reads the whole "
                "table, 40,200 items, per call: DynamoDB reads one partition)",
                f"{query_s:.1f} s",
            ),
            Row(
                f"Baseline: listing alone (DescribeRepositories, DescribeImages){of}",
                f"{listing_s:.1f} s",
            ),
            Row(
                "Reconcile without moto's Query time / listing alone",
                f"{(reconcile_s - query_s) / listing_s:.2f}",
            ),
            Row(
                "DescribeImages pages (one per repository: 50 images each; 1,000 per page)",
                f"{describe} ({self.per_100('ecr.DescribeImages'):.1f} per 100 images)",
                "<= 1 per 100 images or 1 per repository",
                describe <= max(self.repositories, -(-self.images // 100)),
            ),
            Row(
                "BatchGetItem calls",
                f"{batch_get} ({self.per_100('dynamodb.BatchGetItem'):.2f} per 100 images)",
                "<= 1 per 100 images",
                batch_get <= -(-self.images // 100),
            ),
            Row("Query calls (one per repository, one for the held repositories)", str(queries)),
            Row("Registry requests", str(registry), "0", registry == 0),
            Row("S3 GETs", str(s3_gets), "0", s3_gets == 0),
            Row(
                "Writes (index, bucket, queue): only the index's location claim, once a process",
                str(_writes(calls)),
                "<= 1",
                _writes(calls) <= 1,
            ),
            Row("Drift reported", "yes" if self.drift_found else "no", "no", not self.drift_found),
        ]


def _writes(calls: Counter[str]) -> int:
    written = ("PutItem", "UpdateItem", "BatchWriteItem", "PutObject", "SendMessageBatch")
    return sum(v for k, v in calls.items() if k.rpartition(".")[2] in written)


@dataclass
class CallLog:
    """Every AWS call of the clients a session creates from then on (clients copy the
    session's event hooks when created): how many, and seconds spent in them, by operation."""

    counts: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)

    def attach(self, session: Any) -> None:
        session.events.register("before-call", self._before)
        session.events.register("after-call", self._after)

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        self.counts[_operation(model)] += 1
        context["bench_started"] = time.perf_counter()

    def _after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        self.seconds[_operation(model)] += time.perf_counter() - context["bench_started"]

    def clear(self) -> None:
        self.counts.clear()
        self.seconds.clear()


def _operation(model: Any) -> str:
    return f"{model.service_model.service_name}.{model.name}"


@contextlib.contextmanager
def _endpoint(url: str) -> Iterator[None]:
    """The engine's clients, built in this process, talk to the moto server (as the
    command line's do through the same variable)."""
    saved = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield
    finally:
        if saved is None:
            del os.environ["AWS_ENDPOINT_URL"]
        else:
            os.environ["AWS_ENDPOINT_URL"] = saved


def run(ctx: BenchContext, *, repeat: int = 1) -> ReconcileResults:
    with _endpoint(ctx.aws.endpoint):
        return _run(ctx, repeat)


def _run(ctx: BenchContext, repeat: int) -> ReconcileResults:
    import boto3

    from ecr_backup.composition import AwsServices
    from ecr_backup.coverage.backfill import Backfill
    from ecr_backup.coverage.reconcile import Reconciler, Source
    from ecr_backup.settings import Settings
    from ecr_backup.storage.provision import ensure_bucket

    name = f"reconcile-{uuid.uuid4().hex[:8]}"
    prefix = f"{name}/"
    repositories = [f"{prefix}r{n:03d}" for n in range(REPOSITORIES)]
    ecr = ctx.aws.client("ecr")
    dynamodb = ctx.aws.client("dynamodb")
    _say(f"registering {REPOSITORIES * IMAGES_PER_REPOSITORY:,} images with moto's ECR...")
    started = time.perf_counter()
    _register_in_ecr(ecr, repositories)
    settings = Settings(bucket=name, table=name, source_registry=ctx.registry.url)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=ctx.aws.region
    )
    log = CallLog()
    log.attach(session)
    ensure_bucket(ctx.aws.client("s3"), name, region=ctx.aws.region)
    services = AwsServices(settings, session)
    services.index.create_if_missing()
    items = _index_as_backed_up(ecr, dynamodb, name, repositories)
    _say(f"set-up: {items:,} index items in {time.perf_counter() - started:.0f} s")

    source = Source(ACCOUNT, ctx.aws.region)
    reconciles: list[Measured] = []
    listings: list[Measured] = []
    drift = False
    for _ in range(repeat):
        listing = services.listing(ACCOUNT, ctx.aws.region)
        log.clear()
        before = len(ctx.registry.logged_requests())
        start = time.perf_counter()
        report = Backfill(
            Reconciler(listing, services.index, source),
            services.replicator(ACCOUNT, ctx.aws.region),
        ).run([prefix])
        seconds = time.perf_counter() - start
        time.sleep(0.5)  # a late registry log line lands by now
        requests = len(ctx.registry.logged_requests()) - before
        reconciles.append(
            Measured(seconds, Counter(log.counts), requests, log.seconds["dynamodb.Query"])
        )
        drift = drift or report.has_drift
        log.clear()
        start = time.perf_counter()
        for repository in listing.repositories([prefix]):
            listing.images(repository)
        listings.append(Measured(time.perf_counter() - start, Counter(log.counts), 0))
    images = sum(d.images for d in report.repositories)
    return ReconcileResults(images, len(report.repositories), reconciles, listings, drift)


def run_bench(ctx: BenchContext, *, repeat: int = 1) -> list[Row]:
    """bench.run's hook: the reconcile rows of the results table."""
    return run(ctx, repeat=repeat).rows()


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone: start moto and the registry, run the reconcile benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile_bench")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    import tempfile
    from pathlib import Path

    from bench.common import BenchImage
    from devkit import EcrRegistry, MotoServer

    with contextlib.ExitStack() as stack:
        aws = stack.enter_context(MotoServer())
        storage = stack.enter_context(MotoServer())
        registry = stack.enter_context(EcrRegistry(storage, aws, quirks=BENCH_QUIRKS))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ecr-bench-")))
        none = BenchImage("none", "none", "", "", 0, workdir, 0)  # this benchmark pushes none
        ctx = BenchContext(aws, registry, workdir, none)
        print(markdown_table(run_bench(ctx, repeat=args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
