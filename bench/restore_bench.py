"""Restore benchmark: the ~1 GiB single-layer image, bucket -> registry, against skopeo.

On the image bench.run pushed, each copy in a child process (wall time and peak RSS of the
process itself, from wait4):

* restore: `python -m ecr_backup restore REPO:TAG --to HOST/bench/restore-N --no-mount`
  from a bucket the engine backed the image up into, at the default settings. --no-mount
  makes it upload: the source repository lives in the same registry, and a mount would
  measure nothing;
* baseline: `skopeo copy` of the same image between two repositories of the same registry
  (pull and push through the same registry and storage). skopeo remembers where blobs are
  (its blob-info cache, system-wide for root) and would mount them instead of copying, so
  it runs with a fresh cache: as `nobody` with an empty HOME when we are root.

Every run is checked to have copied the layer (the registry's log counts the uploads), and
the restored manifest to hash to the original digest.

`run_bench(ctx)` is what bench.run calls; `python -m bench.restore_bench` runs it alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from bench.common import (
    BenchContext,
    ChildRun,
    MiB,
    Row,
    mib,
    python_module,
    run_child,
    standalone,
)

TARGET_RSS = 256 * MiB
# Restore must be at least as fast as skopeo copying the same image in the same run.
TARGET_RATIO = 1.0
# The registry's commit of the same GiB varies by seconds run to run: five rounds, not three.
RESTORE_ROUNDS = 5
UPLOADED = r"^/v2/{repository}/blobs/uploads/[^/]+$"  # the PUT that commits an uploaded blob
MOUNTED = r"^/v2/{repository}/blobs/uploads/$"  # a POST answered 201 is a mount


@dataclass(frozen=True)
class RestoreResults:
    size: int
    restores: list[ChildRun]
    baselines: list[ChildRun]
    digest_ok: bool

    def throughput(self, run: ChildRun) -> float:
        return self.size / MiB / run.wall_s

    @property
    def restore_throughput(self) -> float:
        return statistics.median(self.throughput(r) for r in self.restores)

    @property
    def baseline_throughput(self) -> float:
        return statistics.median(self.throughput(r) for r in self.baselines)

    @property
    def rounds(self) -> list[tuple[ChildRun, ChildRun]]:
        """(restore, skopeo) of each round: the same bytes, so a ratio is of wall times."""
        return list(zip(self.restores, self.baselines, strict=True))

    @property
    def restore_rss(self) -> int:
        return max(r.peak_rss for r in self.restores)

    def rows(self) -> list[Row]:
        n = len(self.restores)
        of = f" (median of {n})" if n > 1 else ""
        walls = ", ".join(f"{r.wall_s:.1f} s" for r in self.restores)
        base_walls = ", ".join(f"{r.wall_s:.1f} s" for r in self.baselines)
        return [
            Row(
                f"Restore throughput, S3 -> registry{of}",
                f"{self.restore_throughput:,.1f} MiB/s ({walls})",
            ),
            Row(
                f"Baseline: skopeo copy between repositories of the registry{of}",
                f"{self.baseline_throughput:,.1f} MiB/s ({base_walls})",
            ),
            Row(
                "Throughput ratio, restore / skopeo copy, of the medians (round by round: "
                f"{', '.join(f'{b.wall_s / r.wall_s:.2f}' for r, b in self.rounds)})",
                f"{self.restore_throughput / self.baseline_throughput:.2f}",
                f">= {TARGET_RATIO:.2f}",
                self.restore_throughput / self.baseline_throughput >= TARGET_RATIO,
            ),
            Row(
                "CPU seconds, restore process / skopeo process (medians)",
                f"{_median_cpu(self.restores):.1f} s / {_median_cpu(self.baselines):.1f} s",
            ),
            Row(
                "CPU seconds of moto and the registry during each (medians)",
                f"{_median_servers(self.restores):.1f} s / {_median_servers(self.baselines):.1f} s",
            ),
            Row(
                "Peak RSS of the restore process (defaults: one streamed request per blob, "
                "8 MiB read-ahead, 4 blobs at once)",
                mib(self.restore_rss),
                f"<= {mib(TARGET_RSS)}",
                self.restore_rss <= TARGET_RSS,
            ),
            Row("Peak RSS of skopeo copy", mib(max(r.peak_rss for r in self.baselines))),
            Row(
                "Restored manifest digest equals the original",
                "yes" if self.digest_ok else "no",
                "yes",
                self.digest_ok,
            ),
        ]


def _median_cpu(runs: list[ChildRun]) -> float:
    return statistics.median(r.cpu_s for r in runs)


def _median_servers(runs: list[ChildRun]) -> float:
    return statistics.median(r.servers_cpu_s for r in runs)


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _back_up(ctx: BenchContext) -> dict[str, str]:
    """A bucket and table holding the image (the engine's own replicate, not measured)."""
    from bench.backup_bench import fresh_bucket, fresh_table

    bucket = fresh_bucket(ctx, "restore")
    table = fresh_table(ctx, bucket)
    image = ctx.image
    env = ctx.aws_env(bucket=bucket, table=table, source_registry=ctx.registry.url)
    run_child(
        python_module("ecr_backup", "replicate", f"{image.repository}:{image.tag}", "--json"),
        env=env,
        watch=ctx.server_pids,
    ).check()
    return env


@contextlib.contextmanager
def _fresh_skopeo() -> Iterator[list[str]]:
    """argv prefix and environment for a skopeo with an empty blob-info cache."""
    with tempfile.TemporaryDirectory(prefix="bench-skopeo-") as home:
        os.chmod(home, 0o777)
        prefix = ["env", f"HOME={home}", "XDG_DATA_HOME=", "XDG_CONFIG_HOME="]
        if os.geteuid() == 0 and shutil.which("setpriv"):
            # root's cache is /var/lib/containers/cache whatever HOME says: be someone else.
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *prefix]
        yield prefix


def _uploads(ctx: BenchContext, repository: str) -> tuple[int, int]:
    registry = ctx.registry
    return (
        registry.count_requests("PUT", UPLOADED.format(repository=repository), status=201),
        registry.count_requests("POST", MOUNTED.format(repository=repository), status=201),
    )


def _check_copied(ctx: BenchContext, repository: str, what: str) -> None:
    registry = ctx.registry
    # The log line of the last request may land just after the child saw its answer.
    registry.wait_for_request_count(
        "PUT", UPLOADED.format(repository=repository), ctx.image.blob_count, status=201
    )
    uploaded, mounted = _uploads(ctx, repository)
    if uploaded != ctx.image.blob_count or mounted:
        raise RuntimeError(
            f"{what} into {repository} uploaded {uploaded} and mounted {mounted} blobs: "
            "not a copy of the image"
        )


def restore_once(
    ctx: BenchContext, env: dict[str, str], n: int, *, python: str = sys.executable
) -> tuple[ChildRun, bool]:
    image = ctx.image
    repository = f"bench/restore-{n}"
    ctx.registry.ensure_repository(repository)
    run = run_child(
        python_module(
            "ecr_backup",
            "restore",
            f"{image.repository}:{image.tag}",
            "--to",
            f"{ctx.registry.host}/{repository}",
            "--to-auth",
            "ecr",
            "--no-mount",
            "--json",
            python=python,
        ),
        env=env,
        watch=ctx.server_pids,
    ).check()
    report = json.loads(run.stdout)["report"]
    if image.layer_digest not in report["blobs_uploaded"]:
        raise RuntimeError(f"restore did not upload {image.layer_digest}: {run.stdout[:2000]}")
    _check_copied(ctx, repository, "restore")
    from devkit import skopeo_inspect_raw
    from ecr_backup.oci.digest import Digest

    served = skopeo_inspect_raw(ctx.registry, repository, image.tag)
    return run, str(Digest.of(served)) == image.digest


def skopeo_once(ctx: BenchContext, n: int) -> ChildRun:
    image = ctx.image
    registry = ctx.registry
    repository = f"bench/skopeo-{n}"
    registry.ensure_repository(repository)
    creds = f"{registry.username}:{registry.password}"
    with _fresh_skopeo() as prefix:
        run = run_child(
            [
                *prefix,
                "skopeo",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--src-creds",
                creds,
                "--dest-creds",
                creds,
                f"docker://{registry.host}/{image.repository}:{image.tag}",
                f"docker://{registry.host}/{repository}:{image.tag}",
            ],
            env=dict(os.environ),
            watch=ctx.server_pids,
        ).check()
    _check_copied(ctx, repository, "skopeo copy")
    return run


def run(ctx: BenchContext, *, repeat: int = RESTORE_ROUNDS) -> RestoreResults:
    _say("restore: backing the image up into a fresh bucket...")
    env = _back_up(ctx)
    restores: list[ChildRun] = []
    baselines: list[ChildRun] = []
    digest_ok = True
    for n in range(1, repeat + 1):
        # Alternate the order so that drift (moto's page cache) favours neither side.
        for side in ("restore", "skopeo") if n % 2 else ("skopeo", "restore"):
            if side == "restore":
                restored, same = restore_once(ctx, env, n)
                digest_ok = digest_ok and same
                restores.append(restored)
                measured = restored
            else:
                measured = skopeo_once(ctx, n)
                baselines.append(measured)
            _say(
                f"{side} {n}/{repeat}: {measured.wall_s:.1f} s, "
                f"{ctx.image.layer_size / MiB / measured.wall_s:.1f} MiB/s, "
                f"peak RSS {mib(measured.peak_rss)}"
            )
    return RestoreResults(ctx.image.layer_size, restores, baselines, digest_ok)


def run_bench(ctx: BenchContext, *, repeat: int = RESTORE_ROUNDS) -> list[Row]:
    """bench.run's hook: the restore rows of the results table."""
    return run(ctx, repeat=repeat).rows()


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone: moto, the registry and the image, then this benchmark only."""
    return standalone(
        "python -m bench.restore_bench", run_bench, argv, size_mib=1024, repeat=RESTORE_ROUNDS
    )


if __name__ == "__main__":
    sys.exit(main())
