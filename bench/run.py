"""`make bench`: start the local AWS and registry, push a ~1 GiB image, run the benchmarks.

Everything runs on 127.0.0.1: a moto server as the backup's AWS (S3, DynamoDB, ECR's
repositories), and Debian's docker-registry keeping its blobs on a second moto server,
answering blob GETs with 307 redirects, behind the ECR-faithful proxy (devkit/ecr_proxy.py:
ECR's quirks on, tokens from ECR's API that expire). The results table is printed and
written to bench/results.md.
A missed target is reported, not turned into a failing exit status: this is a
benchmark, not a test. The exit status is non-zero only when something broke.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Protocol, cast

from bench import (
    backup_bench,
    import_bench,
    latency_bench,
    lean_bench,
    reconcile_bench,
    serve_bench,
)
from bench.common import (
    BENCH_QUIRKS,
    RESULTS_PATH,
    BenchContext,
    BenchImage,
    MiB,
    Row,
    markdown_table,
    push_image,
)
from devkit import EcrRegistry, MotoServer
from devkit.servers import REGISTRY_BINARY

# One run can take 25% more or less than its median: moto's CompleteMultipartUpload of the
# same GiB took 2.9 to 7.9 s in one session (docs/bench.md); nine pairs steady the medians.
BACKUP_PAIRS = 9


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--size-mib", type=int, default=1024, help="size of the image's one layer (1024)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        help=f"measured pairs per benchmark; medians count (backup: {BACKUP_PAIRS}, "
        "restore: its own default)",
    )
    parser.add_argument(
        "--concurrency", help="pass ECR_BACKUP_CONCURRENCY to the engine (default: its own)"
    )
    parser.add_argument(
        "--part-size-mib", help="pass ECR_BACKUP_PART_SIZE_MIB to the engine (default: its own)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_PATH,
        help="markdown file to write (bench/results.md)",
    )
    parser.add_argument("--no-restore", action="store_true", help="skip the restore benchmark")
    parser.add_argument(
        "--no-reconcile", action="store_true", help="skip the reconcile benchmark (10,000 images)"
    )
    parser.add_argument(
        "--no-serve", action="store_true", help="skip the serve benchmark (pulls from the backup)"
    )
    parser.add_argument(
        "--no-latency",
        action="store_true",
        help="skip the push-to-durable latency benchmark (200 pushes through the queue)",
    )
    parser.add_argument(
        "--no-lean",
        action="store_true",
        help="skip requests per push and CPU seconds per GiB (bench/lean_bench.py)",
    )
    args = parser.parse_args(argv)
    if args.size_mib < 6 or (args.repeat is not None and args.repeat < 1):
        parser.error("--size-mib must be >= 6 (a multipart copy) and --repeat >= 1")
    return args


class RestoreBench(Protocol):
    """bench/restore_bench.py's entry point: the restore rows of the results table."""

    def __call__(self, ctx: BenchContext, *, repeat: int = ...) -> list[Row]: ...


def restore_benchmark() -> RestoreBench | None:
    """bench/restore_bench.py's `run_bench`, when that benchmark is there and loads.

    It is written alongside this one; a restore benchmark that is missing or broken must
    not cost the backup results, so its absence is reported, not raised.
    """
    if importlib.util.find_spec("bench.restore_bench") is None:
        return None
    try:
        module = importlib.import_module("bench.restore_bench")
    except Exception as e:
        print(f"bench: restore benchmark skipped: cannot import it: {e!r}", file=sys.stderr)
        return None
    entry = getattr(module, "run_bench", None)
    if not callable(entry):
        print("bench: restore benchmark skipped: no run_bench(ctx)", file=sys.stderr)
        return None
    return cast(RestoreBench, entry)


def environment_lines(image: BenchImage, elapsed_setup: float) -> list[str]:
    return [
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; host: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"boto3 {version('boto3')}, moto {version('moto')}, urllib3 {version('urllib3')}",
        f"- Image: `{image.repository}:{image.tag}`, one layer of {image.layer_size:,} bytes "
        f"({image.layer_size / MiB:,.1f} MiB), built and pushed in {elapsed_setup:.0f} s",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [b for b in (REGISTRY_BINARY, "skopeo") if shutil.which(b) is None]
    if missing:
        print(f"bench: missing {', '.join(missing)} (run `make bootstrap`)", file=sys.stderr)
        return 2
    engine_settings = {
        name: value
        for name, value in (
            ("concurrency", args.concurrency),
            ("part_size_mib", args.part_size_mib),
        )
        if value is not None
    }
    restore = None if args.no_restore else restore_benchmark()
    failed = False

    started = time.perf_counter()
    # Before the servers start: a cold import is measured on an otherwise idle machine.
    print("bench: handler cold import...", file=sys.stderr)
    cold_import = import_bench.run(**({"repeat": args.repeat} if args.repeat else {}))
    with contextlib.ExitStack() as stack:
        aws = stack.enter_context(MotoServer())
        storage = stack.enter_context(MotoServer())
        registry = stack.enter_context(EcrRegistry(storage, aws, quirks=BENCH_QUIRKS))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ecr-bench-")))
        print(f"bench: moto {aws.endpoint}, registry {registry.url}", file=sys.stderr)
        print(f"bench: building and pushing a {args.size_mib} MiB layer...", file=sys.stderr)
        image = push_image(registry, workdir, args.size_mib * MiB)
        setup_s = time.perf_counter() - started
        ctx = BenchContext(aws, registry, workdir, image, engine_settings)

        backup = backup_bench.run(ctx, repeat=args.repeat or BACKUP_PAIRS)
        sections = [
            "## Backup",
            "",
            markdown_table(backup.rows()),
            "",
            backup.runs_table(),
            "",
            f"Baseline transfer manager: `{backup.transfer_client}`.",
            "",
            "## Handler cold import",
            "",
            markdown_table(cold_import.rows()),
        ]
        if restore is not None:
            sections += ["", "## Restore", ""]
            try:
                rows = restore(ctx) if args.repeat is None else restore(ctx, repeat=args.repeat)
                sections.append(markdown_table(rows))
            except Exception as e:
                # The backup's results are measured: write them, then fail the run.
                traceback.print_exc()
                sections.append(f"The restore benchmark failed: `{e!r}`")
                failed = True
        if not args.no_serve:
            sections += ["", "## Serve (pull from the backup)", ""]
            try:
                repeat = {"repeat": args.repeat} if args.repeat else {}
                sections.append(markdown_table(serve_bench.run_bench(ctx, **repeat)))
            except Exception as e:
                traceback.print_exc()
                sections.append(f"The serve benchmark failed: `{e!r}`")
        if not args.no_latency:
            sections += ["", "## Push-to-durable latency", ""]
            try:
                sections.append(markdown_table(latency_bench.run_bench(ctx)))
            except Exception as e:
                traceback.print_exc()
                sections.append(f"The latency benchmark failed: `{e!r}`")
        if not args.no_lean:
            sections += ["", "## Requests per push and CPU per GiB", ""]
            try:
                rows = lean_bench.run_bench(ctx, repeat=args.repeat or 3)
                sections.append(markdown_table(rows))
            except Exception as e:
                traceback.print_exc()
                sections.append(f"The lean benchmark failed: `{e!r}`")
                failed = True
        if not args.no_reconcile:
            sections += ["", "## Reconcile", ""]
            try:
                rows = reconcile_bench.run_bench(ctx, repeat=args.repeat or 1)
                sections.append(markdown_table(rows))
            except Exception as e:
                traceback.print_exc()
                sections.append(f"The reconcile benchmark failed: `{e!r}`")
                failed = True

    total_s = time.perf_counter() - started
    document = "\n".join(
        [
            "# ecr-backup benchmark results",
            "",
            "Written by `make bench` (`python -m bench.run`); how it measures: docs/bench.md.",
            "",
            *environment_lines(image, setup_s),
            f"- Total run time: {total_s:.0f} s",
            "",
            *sections,
            "",
        ]
    )
    print(document)
    args.results.write_text(document)
    print(f"bench: wrote {args.results}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
