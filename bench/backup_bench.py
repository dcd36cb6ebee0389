"""Backup benchmark: one large layer copied registry -> S3 by the engine, against boto3.

Measured on the image bench.run pushed (a single ~1 GiB layer), every copy in a child
process so that wall time and peak RSS are the process's own:

* backup: `python -m ecr_backup replicate REPO:TAG` into a fresh bucket and table, at
  the engine's default settings (or those bench.run was told to pass);
* baseline: boto3's `upload_file` of the same layer file, default TransferConfig, to the
  same moto endpoint, into another fresh bucket set up the same way;
* replay: `replicate REPO@DIGEST` again, counting the blob GETs the registry logs.

`python -m bench.backup_bench upload FILE BUCKET KEY` is the baseline child.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bench.common import (
    BenchContext,
    ChildRun,
    MiB,
    Row,
    mib,
    python_module,
    run_child,
)

GiB = 1024 * MiB
TARGET_RSS = 256 * MiB
TARGET_RATIO = 0.90  # issue 8: backup throughput at least 0.9x boto3's upload of the same bytes
BLOB_GET = r"^/v2/{repository}/blobs/sha256:[0-9a-f]{{64}}$"


@dataclass(frozen=True)
class EngineSettings:
    """The settings the backup child ran with, as the engine derives them."""

    concurrency: int
    part_size_mib: int
    parts_in_flight: int
    defaults: bool


@dataclass(frozen=True)
class Pair:
    """A backup and a baseline run back to back, each on a freshly reset moto."""

    backup: ChildRun
    baseline: ChildRun


@dataclass(frozen=True)
class BackupResults:
    size: int  # bytes of the layer each copy moves
    settings: EngineSettings
    warmup: Pair  # run first, not counted in the throughputs
    pairs: list[Pair]
    backup_blob_gets: int  # the most any backup made: config + layer expected
    replay: ChildRun
    replay_blob_gets: int
    transfer_client: str  # which boto3 transfer manager the baseline used

    def throughput(self, run: ChildRun) -> float:
        return self.size / MiB / run.wall_s

    @property
    def backup_throughput(self) -> float:
        return statistics.median(self.throughput(p.backup) for p in self.pairs)

    @property
    def baseline_throughput(self) -> float:
        return statistics.median(self.throughput(p.baseline) for p in self.pairs)

    def pair_ratio(self, pair: Pair) -> float:
        return pair.baseline.wall_s / pair.backup.wall_s

    @property
    def ratio(self) -> float:
        """Median backup throughput over median baseline throughput.

        Not the median of the pairs' ratios: with moto reset before every run, a slow run
        is a slow run on its own (boto3's wall time mostly repeats within a few percent, the
        backup's varies with the servers' CPU time), so pairing cancels nothing and lets
        one outlier on either side move a pair's ratio.
        """
        return self.backup_throughput / self.baseline_throughput

    @property
    def backup_rss(self) -> int:
        # The warm-up's peak counts: it did the same work.
        return max(p.backup.peak_rss for p in [self.warmup, *self.pairs])

    @property
    def baseline_rss(self) -> int:
        return max(p.baseline.peak_rss for p in [self.warmup, *self.pairs])

    def cpu_per_gib(self, side: Literal["backup", "baseline"]) -> float:
        """CPU seconds per GiB of the child and the servers together (median)."""
        runs = [p.backup if side == "backup" else p.baseline for p in self.pairs]
        return statistics.median((r.cpu_s + r.servers_cpu_s) * GiB / self.size for r in runs)

    def rows(self) -> list[Row]:
        n = len(self.pairs)
        of = f", median of {n}" if n > 1 else ""
        s = self.settings
        label = "defaults" if s.defaults else "overridden"
        return [
            Row(
                f"Backup throughput, registry -> S3{of}",
                f"{self.backup_throughput:,.1f} MiB/s",
            ),
            Row(
                f"Baseline: boto3 upload_file throughput{of}",
                f"{self.baseline_throughput:,.1f} MiB/s",
            ),
            Row(
                "Throughput ratio, backup / baseline, of the medians (pair by pair: "
                f"{', '.join(f'{self.pair_ratio(p):.2f}' for p in self.pairs)})",
                f"{self.ratio:.2f}",
                f">= {TARGET_RATIO:.2f}",
                self.ratio >= TARGET_RATIO,
            ),
            Row(
                f"Peak RSS of the backup process ({label}: concurrency {s.concurrency}, "
                f"{s.part_size_mib} MiB parts, {s.parts_in_flight} in flight)",
                mib(self.backup_rss),
                f"<= {mib(TARGET_RSS)}",
                self.backup_rss <= TARGET_RSS,
            ),
            Row("Peak RSS of the baseline process", mib(self.baseline_rss)),
            Row(
                "CPU per GiB, all processes (backup / baseline)",
                f"{self.cpu_per_gib('backup'):.1f} s / {self.cpu_per_gib('baseline'):.1f} s",
            ),
            Row("Blob GETs of the backup (config + layer)", str(self.backup_blob_gets)),
            Row(
                f"Blob GETs replaying the complete digest ({self.replay.wall_s:.1f} s)",
                str(self.replay_blob_gets),
                "0",
                self.replay_blob_gets == 0,
            ),
        ]

    def runs_table(self) -> str:
        """Every measured process: where the time and the memory went."""
        lines = [
            "| Run | Wall | Throughput | Peak RSS | CPU of the process | CPU of the servers |",
            "|---|---|---|---|---|---|",
        ]
        labelled = [("warm-up (not counted)", self.warmup)]
        labelled += [(f"pair {n}", p) for n, p in enumerate(self.pairs, 1)]
        for label, pair in labelled:
            for side, r in (("backup", pair.backup), ("baseline", pair.baseline)):
                lines.append(
                    f"| {label}: {side} | {r.wall_s:.1f} s | {self.throughput(r):,.1f} MiB/s "
                    f"| {mib(r.peak_rss)} | {r.cpu_s:.1f} s | {r.servers_cpu_s:.1f} s |"
                )
        r = self.replay
        lines.append(
            f"| replay | {r.wall_s:.1f} s | - | {mib(r.peak_rss)} | {r.cpu_s:.1f} s "
            f"| {r.servers_cpu_s:.1f} s |"
        )
        return "\n".join(lines)


def engine_settings(ctx: BenchContext) -> EngineSettings:
    """What the child will run with: Settings' defaults under the overrides we pass."""
    from ecr_backup.composition import parts_in_flight
    from ecr_backup.settings import Settings

    settings = Settings.load(ctx.aws_env(bucket="bench-probe", table="bench-probe"))
    return EngineSettings(
        concurrency=settings.concurrency,
        part_size_mib=settings.part_size_mib,
        parts_in_flight=parts_in_flight(settings),
        defaults=not ctx.engine_settings,
    )


def fresh_bucket(ctx: BenchContext, purpose: str) -> str:
    """A new bucket configured as `ecr-backup setup` does (versioning, Object Lock)."""
    from ecr_backup.storage.provision import ensure_bucket

    name = f"bench-{purpose}-{secrets.token_hex(4)}"
    ensure_bucket(ctx.aws.client("s3"), name, region=ctx.aws.region, tls_only=False)
    return name


def fresh_table(ctx: BenchContext, name: str) -> str:
    from ecr_backup.storage.index import DynamoIndex

    DynamoIndex(name, client=ctx.aws.client("dynamodb")).create_if_missing()
    return name


def blob_gets(ctx: BenchContext) -> int:
    """Blob GETs the registry has logged for the bench repository, all settled.

    The registry logs a request when it completes, possibly just after our child saw the
    response; a request of our own, once logged, shows that earlier ones are too.
    """
    import urllib3

    registry = ctx.registry
    marker = r"^/v2/$"
    seen = registry.count_requests("GET", marker, status=200)
    urllib3.request("GET", f"{registry.url}/v2/", headers=registry.auth_headers)
    registry.wait_for_request_count("GET", marker, seen + 1, status=200, timeout=10.0)
    return registry.count_requests("GET", BLOB_GET.format(repository=ctx.image.repository))


def backup_once(ctx: BenchContext) -> tuple[ChildRun, str, str]:
    """One full backup into a fresh bucket and table; the run, bucket and table."""
    image = ctx.image
    bucket = fresh_bucket(ctx, "backup")
    table = fresh_table(ctx, bucket)
    run = run_child(
        python_module("ecr_backup", "replicate", f"{image.repository}:{image.tag}", "--json"),
        env=ctx.aws_env(bucket=bucket, table=table, source_registry=ctx.registry.url),
        watch=ctx.server_pids,
    ).check()
    report = json.loads(run.stdout)["report"]  # docs/json.md, `replicate`
    # A benchmark of a copy that did not happen would be meaningless: check it did.
    if report["root"] != image.digest or image.layer_digest not in report["blobs_copied"]:
        raise RuntimeError(f"backup did not copy {image.layer_digest}: {run.stdout}")
    head = ctx.aws.client("s3").head_object(
        Bucket=bucket, Key=f"blobs/sha256/{image.layer_digest.removeprefix('sha256:')}"
    )
    if head["ContentLength"] != image.layer_size:
        raise RuntimeError(f"stored layer has {head['ContentLength']} bytes")
    return run, bucket, table


def baseline_once(ctx: BenchContext) -> tuple[ChildRun, str]:
    bucket = fresh_bucket(ctx, "baseline")
    run = run_child(
        python_module("bench.backup_bench", "upload", str(ctx.image.layer_path), bucket, "layer"),
        env=ctx.aws_env(),
        watch=ctx.server_pids,
    ).check()
    size = ctx.aws.client("s3").head_object(Bucket=bucket, Key="layer")["ContentLength"]
    if size != ctx.image.layer_size:
        raise RuntimeError(f"baseline stored {size} bytes of {ctx.image.layer_size}")
    return run, json.loads(run.stdout)["transfer_client"]


def run(ctx: BenchContext, *, repeat: int = 5, log: bool = True) -> BackupResults:
    """A warm-up pair (its backup then replayed), then `repeat` measured pairs.

    moto is reset before every run (the registry's storage is the other moto and
    survives). moto keeps objects in temporary files: a baseline run after a backup on
    the same moto took up to 40% longer than one after a reset, while with a reset
    before every run its wall time repeated within a few percent. The warm-up brings
    moto's heap and the page cache to the state the measured runs find. The order
    within a pair alternates so that what drift remains favours neither side.
    """

    def say(message: str) -> None:
        if log:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    settings = engine_settings(ctx)
    blob_get_counts: list[int] = []
    transfer_client = ""

    def backup() -> tuple[ChildRun, str, str]:
        ctx.aws.reset()
        before = blob_gets(ctx)
        run, bucket, table = backup_once(ctx)
        blob_get_counts.append(blob_gets(ctx) - before)
        return run, bucket, table

    def baseline() -> ChildRun:
        nonlocal transfer_client
        ctx.aws.reset()
        run, transfer_client = baseline_once(ctx)
        return run

    warm_backup, bucket, table = backup()
    say(f"warm-up: backup {_summary(ctx, warm_backup)}")
    before = blob_gets(ctx)
    image = ctx.image
    replay = run_child(
        python_module("ecr_backup", "replicate", f"{image.repository}@{image.digest}", "--json"),
        env=ctx.aws_env(bucket=bucket, table=table, source_registry=ctx.registry.url),
        watch=ctx.server_pids,
    ).check()
    replay_blob_gets = blob_gets(ctx) - before
    say(f"replay: {replay.wall_s:.1f} s, {replay_blob_gets} blob GETs")
    warm_baseline = baseline()
    say(f"warm-up: baseline {_summary(ctx, warm_baseline)}")

    pairs: list[Pair] = []
    for n in range(1, repeat + 1):
        if n % 2:
            backup_run = backup()
            say(f"pair {n}/{repeat}: backup {_summary(ctx, backup_run[0])}")
            baseline_run = baseline()
            say(f"pair {n}/{repeat}: baseline {_summary(ctx, baseline_run)}")
        else:
            baseline_run = baseline()
            say(f"pair {n}/{repeat}: baseline {_summary(ctx, baseline_run)}")
            backup_run = backup()
            say(f"pair {n}/{repeat}: backup {_summary(ctx, backup_run[0])}")
        pairs.append(Pair(backup_run[0], baseline_run))

    return BackupResults(
        size=ctx.image.layer_size,
        settings=settings,
        warmup=Pair(warm_backup, warm_baseline),
        pairs=pairs,
        backup_blob_gets=max(blob_get_counts),
        replay=replay,
        replay_blob_gets=replay_blob_gets,
        transfer_client=transfer_client,
    )


def _summary(ctx: BenchContext, run: ChildRun) -> str:
    return (
        f"{run.wall_s:.1f} s, {ctx.image.layer_size / MiB / run.wall_s:.1f} MiB/s, "
        f"peak RSS {mib(run.peak_rss)}, CPU {run.cpu_s:.1f} s "
        f"(servers {run.servers_cpu_s:.1f} s)"
    )


# --- the baseline child --------------------------------------------------------------


def upload_main(argv: Sequence[str]) -> int:
    """boto3's own upload of a file: what the backup's throughput is compared with.

    Nothing but boto3 is imported, and nothing is configured: default client, default
    TransferConfig (8 MiB parts, 10 threads), endpoint and credentials from the
    environment, exactly like the backup child.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.backup_bench upload")
    parser.add_argument("file")
    parser.add_argument("bucket")
    parser.add_argument("key")
    args = parser.parse_args(argv)

    import boto3
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    s3 = boto3.client("s3")
    config = TransferConfig()
    s3.upload_file(args.file, args.bucket, args.key, Config=config)
    # Report which transfer manager boto3 picked (CRT on "optimized" instances).
    with create_transfer_manager(s3, config) as manager:
        transfer_client = type(manager).__name__
    print(json.dumps({"transfer_client": transfer_client}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["upload"]:
        return upload_main(args[1:])
    print("usage: python -m bench.backup_bench upload FILE BUCKET KEY (run bench.run)")
    return 2


if __name__ == "__main__":
    sys.exit(main())
