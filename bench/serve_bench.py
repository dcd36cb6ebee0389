"""Serve benchmark: pulling the ~1 GiB single-layer image out of `ecr-backup serve`, against
pulling it from the devkit registry, in the same run.

On the image bench.run pushed (backed up into a fresh bucket first, not measured):

* serve: `skopeo copy docker://127.0.0.1:PORT/REPO:TAG oci:DIR:TAG` from
  `python -m ecr_backup serve`, once with `--blobs redirect` (307 to presigned S3 URLs on
  moto, as the registry does) and once with `--blobs stream` (the server sends the bytes);
* baseline: the same `skopeo copy` from the devkit registry (Debian's, behind the
  ECR-faithful proxy, its blobs 307 to moto S3).

Each copy runs with a fresh skopeo cache and is checked to hold the image's digest. The
server runs for all the rounds of its mode; its peak RSS is the kernel's high-water mark
of the process (wait4, after SIGTERM), whatever the layer size.

The first pull after the server starts is reported on its own row, not in the ratio: for
each blob, serve lists the object's versions once (ListObjectVersions, to pick the
version that hashes to the digest) and remembers the answer. On S3 that is one LIST
request; moto's ListObjectVersions deep-copies every object of the bucket whatever the
prefix, about 10 s per call with the GiB layer in the bucket, which would measure moto.

`run_bench(ctx)` is what bench.run calls; `python -m bench.serve_bench` runs it alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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

TARGET_RSS = 128 * MiB
# A pull from the backup is at least 90% as fast as one from the registry.
TARGET_RATIO = 0.9
SERVE_ROUNDS = 3
MODES = ("redirect", "stream")


@dataclass(frozen=True)
class ModeResults:
    mode: str
    size: int
    first: ChildRun
    serves: list[ChildRun]
    baselines: list[ChildRun]
    server_rss: int
    digest_ok: bool

    def throughput(self, runs: list[ChildRun]) -> float:
        return statistics.median(self.size / MiB / r.wall_s for r in runs)

    @property
    def ratio(self) -> float:
        return self.throughput(self.serves) / self.throughput(self.baselines)

    def rows(self) -> list[Row]:
        n = len(self.serves)
        walls = ", ".join(f"{r.wall_s:.1f} s" for r in self.serves)
        base_walls = ", ".join(f"{r.wall_s:.1f} s" for r in self.baselines)
        rounds = ", ".join(
            f"{b.wall_s / s.wall_s:.2f}" for s, b in zip(self.serves, self.baselines, strict=True)
        )
        return [
            Row(
                f"First pull from serve --blobs {self.mode} after it started (one "
                "ListObjectVersions per blob; moto's copies the whole bucket)",
                f"{self.throughput([self.first]):,.1f} MiB/s ({self.first.wall_s:.1f} s)",
            ),
            Row(
                f"skopeo copy from serve --blobs {self.mode} to an OCI layout, after the first "
                f"(median of {n})",
                f"{self.throughput(self.serves):,.1f} MiB/s ({walls})",
            ),
            Row(
                f"Baseline: the same copy from the devkit registry (median of {n})",
                f"{self.throughput(self.baselines):,.1f} MiB/s ({base_walls})",
            ),
            Row(
                f"Throughput ratio, serve ({self.mode}) / registry, of the medians (round by "
                f"round: {rounds})",
                f"{self.ratio:.2f}",
                f">= {TARGET_RATIO:.2f}",
                self.ratio >= TARGET_RATIO,
            ),
            Row(
                f"Peak RSS of serve --blobs {self.mode} over its {n} pulls",
                mib(self.server_rss),
                f"<= {mib(TARGET_RSS)}",
                self.server_rss <= TARGET_RSS,
            ),
            Row(
                f"Pulled manifest digest equals the original ({self.mode})",
                "yes" if self.digest_ok else "no",
                "yes",
                self.digest_ok,
            ),
        ]


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _skopeo_into() -> Iterator[tuple[list[str], Path]]:
    """argv prefix for a skopeo with an empty blob-info cache (as `nobody` when we are root,
    see restore_bench), and an empty directory it may write the OCI layout into."""
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as home:
        os.chmod(home, 0o777)
        prefix = ["env", f"HOME={home}", "XDG_DATA_HOME=", "XDG_CONFIG_HOME="]
        if os.geteuid() == 0 and shutil.which("setpriv"):
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *prefix]
        yield prefix, Path(home) / "layout"


def _copy(ctx: BenchContext, source: str, creds: list[str]) -> tuple[ChildRun, bool]:
    image = ctx.image
    with _skopeo_into() as (prefix, layout):
        run = run_child(
            [
                *prefix,
                "skopeo",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                *creds,
                f"docker://{source}/{image.repository}:{image.tag}",
                f"oci:{layout}:{image.tag}",
            ],
            env=dict(os.environ),
            watch=ctx.server_pids,
        ).check()
        index = json.loads((layout / "index.json").read_text())
        digests = [m["digest"] for m in index["manifests"]]
        copied = layout / "blobs" / "sha256" / image.layer_digest.removeprefix("sha256:")
        ok = digests == [image.digest] and copied.stat().st_size == image.layer_size
    return run, ok


@contextlib.contextmanager
def _serving(env: dict[str, str], mode: str, port: int) -> Iterator[list[int]]:
    """`ecr-backup serve` for the rounds of one mode; yields a list its peak RSS lands in."""
    argv = python_module("ecr_backup", "serve", "--listen", f"127.0.0.1:{port}", "--blobs", mode)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        peak: list[int] = []
        try:
            _wait_ready(port, process, log)
            yield peak
        finally:
            process.send_signal(signal.SIGTERM)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            peak.append(usage.ru_maxrss * 1024)  # Linux reports KiB
        if process.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"serve exited with {process.returncode}: {log.read()[-2000:]!r}")


def _wait_ready(port: int, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"serve did not start: {log.read()[-2000:]!r}") from None
            time.sleep(0.1)


def run(ctx: BenchContext, *, repeat: int = SERVE_ROUNDS) -> list[ModeResults]:
    from bench.restore_bench import _back_up
    from devkit import free_port

    _say("serve: backing the image up into a fresh bucket...")
    env = _back_up(ctx)
    registry = ctx.registry
    results = []
    for mode in MODES:
        port = free_port()
        serves: list[ChildRun] = []
        baselines: list[ChildRun] = []
        with _serving(env, mode, port) as peak:
            first, digest_ok = _copy(ctx, f"127.0.0.1:{port}", ["--src-no-creds"])
            _say(f"serve {mode}: first pull: {first.wall_s:.1f} s")
            for n in range(1, repeat + 1):
                # Alternate the order so that drift (moto's page cache) favours neither side.
                for side in ("serve", "registry") if n % 2 else ("registry", "serve"):
                    if side == "serve":
                        measured, ok = _copy(ctx, f"127.0.0.1:{port}", ["--src-no-creds"])
                        serves.append(measured)
                    else:
                        creds = ["--src-creds", f"{registry.username}:{registry.password}"]
                        measured, ok = _copy(ctx, registry.host, creds)
                        baselines.append(measured)
                    digest_ok = digest_ok and ok
                    _say(
                        f"serve {mode}: {side} {n}/{repeat}: {measured.wall_s:.1f} s, "
                        f"{ctx.image.layer_size / MiB / measured.wall_s:.1f} MiB/s"
                    )
        results.append(
            ModeResults(mode, ctx.image.layer_size, first, serves, baselines, peak[0], digest_ok)
        )
        _say(f"serve {mode}: peak RSS {mib(peak[0])}")
    return results


def run_bench(ctx: BenchContext, *, repeat: int = SERVE_ROUNDS) -> list[Row]:
    """bench.run's hook: the serve rows of the results table."""
    return [row for result in run(ctx, repeat=repeat) for row in result.rows()]


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone: moto, the registry and the image, then this benchmark only."""
    return standalone(
        "python -m bench.serve_bench", run_bench, argv, size_mib=1024, repeat=SERVE_ROUNDS
    )


if __name__ == "__main__":
    sys.exit(main())
