"""Push-to-durable latency benchmark: images pushed through the devkit, their ECR events
delivered through an SQS queue to the replicate handler, as Lambda's poller would with the
template's batch settings, and the p50 and p99 of the `PushToDurableLatency` it emits.

* Pushes (not measured): `IMAGES` small images (a base layer they all share plus a layer
  of their own) into the ECR-faithful registry with plain HTTP, one after another, each
  followed at once by its "ECR Image Action" event (devkit/events.py: what ECR sends, with
  EventBridge's whole-second `time`), sent to a queue on moto. EventBridge's own delivery
  delay (typically well under a second) is not modelled.
* Consumers: `MaximumConcurrency` worker processes, each a Lambda instance: it receives up
  to `BatchSize` messages (waiting up to `MaximumBatchingWindowInSeconds` for a full
  batch), calls `handlers/replicate.py`'s `handler` with them as Lambda's SQS event, deletes
  the records that did not fail, and keeps the `PushToDurableLatency` values the handler
  prints as CloudWatch EMF: the same numbers the template's LatencyAlarm reads.
* Batch size, window and concurrency default to template.yaml's parameter defaults.

Lambda's start-up (cold starts, the poller scaling up from five) is not modelled either:
the workers are warm when the first push lands. `run_bench(ctx)` is what bench.run calls;
`python -m bench.latency_bench` runs it alone, with its own servers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, BenchContext, Row, markdown_table, python_module

IMAGES = 200
REPOSITORY = "bench/latency"
BASE_LAYER_SIZE = 64 * 1024
OWN_LAYER_SIZE = 16 * 1024
# What the template's LatencyAlarm fires above by default (parameter LatencyAlarmSeconds).
ALARM_DEFAULT_S = 300.0
SETTLE_TIMEOUT_S = 600.0


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BatchSettings:
    """The replicate function's SQS event source, as template.yaml deploys it."""

    batch_size: int
    window_s: int
    concurrency: int
    timeout_s: int

    @classmethod
    def from_template(cls) -> BatchSettings:
        from cfnlint.decode import decode_str

        template, _ = decode_str((REPO_ROOT / "template.yaml").read_text())
        assert template is not None
        defaults = {name: p.get("Default") for name, p in template["Parameters"].items()}
        return cls(
            batch_size=int(defaults["BatchSize"]),
            window_s=int(defaults["BatchingWindowSeconds"]),
            concurrency=int(defaults["MaximumConcurrency"]),
            timeout_s=int(defaults["FunctionTimeout"]),
        )


@dataclass(frozen=True)
class Result:
    images: int
    settings: BatchSettings
    latencies: list[float]
    push_s: float  # the pushes, first to last
    drain_s: float  # first push (or the burst) to the last image durable
    failed_records: int
    burst: bool = False

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        # Nearest rank: the smallest value with at least p% of the values at or below it.
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1]

    def rows(self) -> list[Row]:
        s = self.settings
        p99 = self.percentile(99)
        how = "a burst of" if self.burst else "as pushed,"
        sent = (
            f"{self.images} events sent in {self.push_s:.1f} s"
            if self.burst
            else f"{self.images / self.push_s:.1f} pushes/s"
        )
        return [
            Row(
                f"Push-to-durable latency, {how} {self.images} images (BatchSize "
                f"{s.batch_size}, window {s.window_s} s, concurrency {s.concurrency})",
                f"p50 {self.percentile(50):.1f} s, p99 {p99:.1f} s, "
                f"max {max(self.latencies):.1f} s; {sent}; all durable after "
                f"{self.drain_s:.1f} s; {self.failed_records} records retried",
                f"p99 <= {ALARM_DEFAULT_S:.0f} s (LatencyAlarmSeconds)",
                p99 <= ALARM_DEFAULT_S,
            )
        ]


class Images:
    """The bench's images, built once in an OCI layout; pushed as the run goes (trickle) or
    all before it (burst)."""

    def __init__(self, ctx: BenchContext, count: int) -> None:
        from devkit.images import OciLayoutBuilder

        _say(f"building {count} images...")
        self.ctx = ctx
        self.layout = OciLayoutBuilder(ctx.workdir / f"latency-images-{uuid.uuid4().hex[:8]}")
        base = self.layout.add_layer(BASE_LAYER_SIZE, seed=1)
        self.built = [
            self.layout.image(
                [base, self.layout.add_layer(OWN_LAYER_SIZE, seed=100 + n)], ref=f"v{n}"
            )
            for n in range(count)
        ]
        self.pushed = False

    def push(self, n: int) -> None:
        from devkit.images import http_push

        http_push(self.layout, self.built[n], self.ctx.registry, REPOSITORY, f"v{n}")

    def push_all(self) -> None:
        if not self.pushed:
            _say(f"pushing {len(self.built)} images before the burst...")
            for n in range(len(self.built)):
                self.push(n)
            self.pushed = True


def run(
    ctx: BenchContext,
    images: Images,
    settings: BatchSettings,
    *,
    burst: bool = False,
) -> Result:
    """Trickle: each image's event is sent as its push lands. Burst: every image is in the
    registry first, then all their events are sent at once, each timed as it is sent (as
    if every push had landed in that second: a CI fan-out, or replication of a backlog)."""
    from devkit.events import EcrEventSource
    from ecr_backup.storage.index import DynamoIndex
    from ecr_backup.storage.provision import ensure_bucket

    if burst:
        images.push_all()
    count = len(images.built)
    name = f"latency-{uuid.uuid4().hex[:8]}"
    ensure_bucket(ctx.aws.client("s3"), name, region=ctx.aws.region, tls_only=False)
    DynamoIndex(name, client=ctx.aws.client("dynamodb")).create_if_missing()
    sqs = ctx.aws.client("sqs")
    queue = sqs.create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": str(6 * settings.timeout_s)}
    )["QueueUrl"]
    out = ctx.workdir / f"{name}-out"
    out.mkdir()
    workers = _start_workers(ctx, name, queue, settings, out)
    try:
        _wait_ready(out, settings.concurrency)
        source = EcrEventSource(region=ctx.aws.region)
        started = time.perf_counter()
        if burst:
            _say(f"sending {count} events at once ({settings})...")
            events = [
                json.dumps(event)
                for n, image in enumerate(images.built)
                for event in source.pushed(image, REPOSITORY, f"v{n}")
            ]
            for first in range(0, len(events), 10):
                entries = [
                    {"Id": str(i), "MessageBody": body}
                    for i, body in enumerate(events[first : first + 10])
                ]
                sqs.send_message_batch(QueueUrl=queue, Entries=entries)
        else:
            _say(f"pushing {count} images, each event sent as it lands ({settings})...")
            for n, image in enumerate(images.built):
                images.push(n)
                for event in source.pushed(image, REPOSITORY, f"v{n}"):
                    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(event))
            images.pushed = True
        push_s = time.perf_counter() - started
        latencies, failed = _wait_durable(out, count)
        drain_s = time.perf_counter() - started
    finally:
        (out / "stop").touch()
        for worker in workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return Result(count, settings, latencies, push_s, drain_s, failed, burst)


def _start_workers(
    ctx: BenchContext, name: str, queue: str, settings: BatchSettings, out: Path
) -> list[subprocess.Popen[bytes]]:
    env = ctx.aws_env(bucket=name, table=name, source_registry=ctx.registry.url)
    env.update(
        {
            "POWERTOOLS_SERVICE_NAME": "ecr-backup",
            "POWERTOOLS_METRICS_NAMESPACE": "EcrBackup",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    argv = python_module(
        "bench.latency_bench",
        "worker",
        queue,
        str(settings.batch_size),
        str(settings.window_s),
        str(settings.timeout_s),
        str(out),
    )
    return [
        subprocess.Popen(
            [*argv, str(n)], env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=None
        )
        for n in range(settings.concurrency)
    ]


def _wait_ready(out: Path, workers: int) -> None:
    deadline = time.monotonic() + 120
    while len(list(out.glob("ready-*"))) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError("latency bench: workers did not start within 120 s")
        time.sleep(0.2)


def _wait_durable(out: Path, images: int) -> tuple[list[float], int]:
    """The latencies the workers have reported, once there is one per image."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        latencies: list[float] = []
        failed = 0
        for path in out.glob("worker-*.jsonl"):
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    latencies.extend(record["latencies"])
                    failed += record["failed"]
        if len(latencies) >= images:
            return latencies, failed
        if time.monotonic() > deadline:
            raise RuntimeError(f"latency bench: {len(latencies)} of {images} images durable")
        time.sleep(0.2)


# --- the worker: one Lambda instance reading the queue ------------------------------------


@dataclass
class _Context:
    """The LambdaContext fields the handler reads."""

    deadline: float
    function_name: str = "ecr-backup-replicate"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:replicate"
    aws_request_id: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def worker(queue: str, batch_size: int, window_s: int, timeout_s: int, out: Path, n: int) -> int:
    import boto3

    from devkit.events import sqs_record

    sys.path.insert(0, str(REPO_ROOT / "handlers"))
    import replicate

    sqs = boto3.client("sqs")
    (out / f"ready-{n}").touch()
    results = out / f"worker-{n}.jsonl"
    while True:
        messages = _receive(sqs, queue, batch_size, window_s)
        if not messages:
            if (out / "stop").exists():
                return 0
            continue
        event = {
            "Records": [
                sqs_record(m["Body"], m["MessageId"]) | {"receiptHandle": m["ReceiptHandle"]}
                for m in messages
            ]
        }
        context = _Context(time.monotonic() + timeout_s, aws_request_id=str(uuid.uuid4()))
        emitted = io.StringIO()
        with contextlib.redirect_stdout(emitted):
            answer = replicate.handler(event, context)
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        for m in messages:
            if m["MessageId"] in failed:
                # Lambda's poller leaves them for the visibility timeout; here, retry now.
                sqs.change_message_visibility(
                    QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
        record = {"latencies": _latencies(emitted.getvalue()), "failed": len(failed)}
        with results.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _receive(sqs: Any, queue: str, batch_size: int, window_s: int) -> list[dict[str, Any]]:
    """One batch as Lambda's poller gathers it: up to batch_size messages, waiting up to the
    batching window for more once one is there (without a window: what is there now)."""
    messages: list[dict[str, Any]] = []
    first_at: float | None = None
    while len(messages) < batch_size:
        waited = 0 if first_at is None else time.monotonic() - first_at
        wait = 1 if first_at is None else max(0, min(20, int(window_s - waited)))
        answer = sqs.receive_message(
            QueueUrl=queue,
            MaxNumberOfMessages=min(10, batch_size - len(messages)),
            WaitTimeSeconds=wait,
        )
        got = answer.get("Messages", [])
        messages += got
        if first_at is None:
            if not got:
                return []
            first_at = time.monotonic()
        if window_s == 0 or time.monotonic() - first_at >= window_s:
            break
    return messages


def _latencies(emf: str) -> list[float]:
    values: list[float] = []
    for line in emf.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        value = document.get("PushToDurableLatency")
        if value is not None:
            values.extend(value if isinstance(value, list) else [value])
    return values


# --- entry points ----------------------------------------------------------------------------


def run_bench(ctx: BenchContext, *, images: int = IMAGES) -> list[Row]:
    """bench.run's hook: the template's settings, as pushed and in a burst."""
    settings = BatchSettings.from_template()
    built = Images(ctx, images)
    return [
        *run(ctx, built, settings).rows(),
        *run(ctx, built, settings, burst=True).rows(),
    ]


def _variant(text: str, template: BatchSettings) -> BatchSettings:
    """BATCH,WINDOW,CONCURRENCY, e.g. 10,0,2."""
    try:
        batch, window, concurrency = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected BATCH,WINDOW,CONCURRENCY") from None
    return BatchSettings(batch, window, concurrency, template.timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "worker":
        queue, batch, window, timeout, out, n = args[1:]
        return worker(queue, int(batch), int(window), int(timeout), Path(out), int(n))
    template = BatchSettings.from_template()
    parser = argparse.ArgumentParser(prog="python -m bench.latency_bench", description=__doc__)
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument(
        "--burst",
        action="append",
        default=[],
        type=lambda text: _variant(text, template),
        metavar="BATCH,WINDOW,CONCURRENCY",
        help="also measure a burst with these settings (repeatable)",
    )
    options = parser.parse_args(args)

    from bench.common import BENCH_QUIRKS, BenchImage
    from devkit import EcrRegistry, MotoServer

    with contextlib.ExitStack() as stack:
        aws = stack.enter_context(MotoServer())
        storage = stack.enter_context(MotoServer())
        registry = stack.enter_context(EcrRegistry(storage, aws, quirks=BENCH_QUIRKS))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ecr-bench-")))
        none = BenchImage("none", "none", "", "", 0, workdir, 0)  # the images are its own
        ctx = BenchContext(aws, registry, workdir, none)
        images = Images(ctx, options.images)
        rows = run(ctx, images, template).rows() + run(ctx, images, template, burst=True).rows()
        print(markdown_table(rows), flush=True)
        for variant in options.burst:
            rows += run(ctx, images, variant, burst=True).rows()
            print(markdown_table(rows[-1:]), flush=True)
        print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
