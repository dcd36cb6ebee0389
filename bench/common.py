"""What the benchmarks share: the servers and image one run sets up, child processes
measured from outside, and the results table.

Only the standard library is imported at module level: the baseline upload child
(`python -m bench.backup_bench upload ...`) imports this module, and anything more
would inflate the RSS it is compared on.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devkit import EcrQuirks, EcrRegistry, MotoServer, OciLayoutBuilder, skopeo_push
from devkit.images import OCI_CONFIG, OCI_MANIFEST

MiB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "results.md"
# The image every benchmark copies, one layer of --size-mib.
REPOSITORY = "bench/big"
TAG = "v1"
# Every ECR quirk on; tokens last 15 minutes (ECR's last 12 hours) so that a slow 1 GiB
# skopeo copy, whose credentials are fixed when it starts, is not cut off mid-run.
BENCH_QUIRKS = EcrQuirks(token_lifetime_s=900.0)

# Variables of the caller's shell that would point a child at real AWS or override
# the settings a benchmark passes explicitly.
_SCRUBBED_PREFIXES = ("AWS_", "ECR_BACKUP_", "BOTO_")


@dataclass(frozen=True)
class BenchImage:
    """The image every benchmark works on, pushed once per run."""

    repository: str
    tag: str
    digest: str  # the manifest's
    layer_digest: str
    layer_size: int
    layer_path: Path  # the layer's bytes on local disk (the baseline uploads this file)
    blob_count: int  # config + layers: the blob GETs a full backup makes


@dataclass
class BenchContext:
    """Servers and image of one benchmark run; benchmarks add buckets and tables of their own.

    `aws` is the moto server playing the backup's AWS (S3, DynamoDB, ECR's repositories);
    the registry is Debian's behind the ECR-faithful proxy (devkit/ecr_proxy.py, which
    also answers ECR's token API) and keeps its blobs on a separate moto server, as in
    the integration tests.
    """

    aws: MotoServer
    registry: EcrRegistry
    workdir: Path
    image: BenchImage
    # Passed to the engine's child processes as ECR_BACKUP_<NAME>; empty = defaults.
    engine_settings: dict[str, str] = field(default_factory=dict)

    @property
    def server_pids(self) -> list[int]:
        """The processes serving the copies: both moto servers and the registry (the proxy
        is a thread of this process)."""
        servers = (self.aws, self.registry.storage, self.registry.upstream)
        return [s.process.pid for s in servers if s.process is not None]

    def aws_env(self, **settings: str) -> dict[str, str]:
        """A child's environment: moto with dummy credentials, plus ECR_BACKUP_* settings."""
        settings_env = {
            f"ECR_BACKUP_{k.upper()}": v for k, v in {**self.engine_settings, **settings}.items()
        }
        # ECR's API (tokens that expire) through the proxy; the rest of AWS on moto.
        return child_env(
            self.aws.endpoint,
            self.aws.region,
            {"AWS_ENDPOINT_URL_ECR": self.registry.url, **settings_env},
        )


def child_env(endpoint: str, region: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            # No shared config or credentials file may change what is measured.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
    )
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class ChildRun:
    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child itself
    peak_rss: int  # bytes: the kernel's high-water mark of the child's resident set
    servers_cpu_s: float  # user + system the watched server processes spent meanwhile
    stdout: str
    stderr: str

    def check(self) -> ChildRun:
        if self.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.argv)} exited with {self.returncode}:\n{self.stderr[-4000:]}"
            )
        return self


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    watch: Sequence[int] = (),
    timeout: float = 900.0,
) -> ChildRun:
    """Run a process to completion; its wall time, CPU time and its own peak RSS.

    `watch` lists server processes (moto, the registry) whose CPU time during the run is
    added up: on a small machine they compete with the child for the same cores.

    wait4() returns the rusage of exactly this child, whereas RUSAGE_CHILDREN would
    report the largest of every child this process ever reaped (skopeo included), and
    polling with psutil could miss a short peak. Output goes to files, not pipes, so a
    chatty child can't block on a full pipe while we sit in wait4().
    """
    servers_before = _cpu_seconds(watch)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env),
            cwd=REPO_ROOT,
        )
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - start
        servers_cpu = _cpu_seconds(watch) - servers_before
        # Tell Popen the child is reaped, or its finalizer would wait for it again.
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildRun(
            argv=tuple(argv),
            returncode=process.returncode,
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss=usage.ru_maxrss * 1024,  # Linux reports KiB
            servers_cpu_s=servers_cpu,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def _cpu_seconds(pids: Sequence[int]) -> float:
    """User + system time of running processes, from /proc (the bench is Linux-only anyway:
    Debian's registry, and ru_maxrss in KiB)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Fields after the parenthesised command name (which may hold spaces): utime and
        # stime are the 12th and 13th.
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def python_module(module: str, *args: str, python: str = sys.executable) -> list[str]:
    """argv running `module` from the repository root, with this interpreter (the venv's)
    unless another is given (bench/installed.py's)."""
    return [python, "-m", module, *args]


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the results table; `passed` is None for context without a target."""

    metric: str
    measured: str
    target: str = ""
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        if self.passed is None:
            return ""
        return "pass" if self.passed else "**FAIL**"


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| Metric | Measured | Target | Result |", "|---|---|---|---|"]
    lines += [f"| {r.metric} | {r.measured} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


def mib(size: float) -> str:
    return f"{size / MiB:,.1f} MiB"


def config_only_manifest(seed: str) -> bytes:
    """A small OCI image manifest, distinct for each `seed`: a config digest, no layers.
    What the reconcile benchmarks register with moto's ECR by the thousand."""
    config = hashlib.sha256(seed.encode()).hexdigest()
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": f"sha256:{config}", "size": 2},
        "layers": [],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def push_image(registry: EcrRegistry, workdir: Path, size: int) -> BenchImage:
    """Build a one-layer OCI image on disk (streamed, constant memory) and skopeo it in."""
    layout = OciLayoutBuilder(workdir / "oci")
    # Incompressible random content in stored (level 0) gzip: ~size bytes on the wire.
    layer = layout.add_layer(size, seed=1)
    built = layout.image([layer], ref=TAG)
    pushed = skopeo_push(layout.path, TAG, registry, REPOSITORY, TAG)
    if pushed != built.digest:
        raise RuntimeError(f"skopeo pushed {pushed}, built {built.digest}")
    return BenchImage(
        repository=REPOSITORY,
        tag=TAG,
        digest=built.digest,
        layer_digest=layer.descriptor.digest,
        layer_size=layer.descriptor.size,
        layer_path=layout.blob_path(layer.descriptor.digest),
        blob_count=len(built.blobs),
    )


def standalone(
    prog: str,
    run_bench: Callable[..., list[Row]],
    argv: Sequence[str] | None,
    *,
    size_mib: int,
    repeat: int,
) -> int:
    """`python -m bench.<name>` alone: start moto and the registry, push a one-layer image,
    run that benchmark only and print its table."""
    import argparse
    import contextlib

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--size-mib", type=int, default=size_mib)
    parser.add_argument("--repeat", type=int, default=repeat)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        aws = stack.enter_context(MotoServer())
        storage = stack.enter_context(MotoServer())
        registry = stack.enter_context(EcrRegistry(storage, aws, quirks=BENCH_QUIRKS))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ecr-bench-")))
        print(f"bench: building and pushing a {args.size_mib} MiB layer...", file=sys.stderr)
        image = push_image(registry, workdir, args.size_mib * MiB)
        ctx = BenchContext(aws, registry, workdir, image)
        print(markdown_table(run_bench(ctx, repeat=args.repeat)))
    return 0
