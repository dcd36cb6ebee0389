"""Lean benchmark (issue 19): what one push costs the engine where the stand-in servers
cannot blur it.

* Requests per push, by service and operation, counted at a proxy in front of moto (and
  of ECR's API) for a fresh `ecr-backup replicate` process: a first push of a 10-layer
  image, an incremental push adding one small layer to those 10, and a replay of it.
  tests/integration/test_requests.py pins the ceilings; this table shows the detail.
* Client CPU seconds per GiB (user + system of the child process, from wait4): backup,
  restore, boto3's own upload of the same layer file, skopeo's copy of the image, and one
  hashlib sha256 pass over the layer (the floor: every verified copy hashes the bytes
  once). Over plain HTTP, and with AWS behind a TLS proxy (self-signed certificate,
  AWS_CA_BUNDLE) as AWS always is; the registry stays on HTTP (skopeo's figure is the
  same in both). Medians of `repeat` runs. The engine and boto3 run as people install them:
  with bench/installed.py's interpreter, which sees only ecr-backup's runtime dependencies
  (the development venv's awscrt and pyOpenSSL change what botocore does).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.common import (
    BenchContext,
    MiB,
    Row,
    python_module,
    run_child,
    standalone,
)

GiB = 1024 * MiB
REPOSITORY = "bench/lean"
# Issue 19's targets over plain HTTP, as multiples of the sha256 floor.
BACKUP_FLOOR_RATIO = 4.0
RESTORE_FLOOR_RATIO = 3.0
HASH_PASS = (
    "import hashlib, sys\n"
    "h = hashlib.sha256()\n"
    "with open(sys.argv[1], 'rb', buffering=0) as f:\n"
    "    for block in iter(lambda: f.read(1 << 20), b''):\n"
    "        h.update(block)\n"
    "print(h.hexdigest())\n"
)


@dataclass(frozen=True)
class CpuPerGib:
    """Median CPU seconds per GiB of each client, over one transport."""

    transport: str
    floor: float
    backup: float
    boto3: float
    restore: float
    skopeo: float
    startup: float  # CPU seconds of a replay: process start, imports, its few requests
    gib: float  # the layer's size in GiB (the figures above are per GiB)


def _say(message: str) -> None:
    print(f"bench: lean: {message}", file=sys.stderr)


# -- requests per push --------------------------------------------------------------------


def requests_per_push(ctx: BenchContext) -> dict[str, Counter[tuple[str, str]]]:
    """AWS requests of a fresh `replicate` process: first push, incremental push, replay."""
    from bench.backup_bench import fresh_bucket, fresh_table
    from devkit import OciLayoutBuilder, skopeo_push
    from devkit.counting_proxy import CountingProxy

    layout = OciLayoutBuilder(ctx.workdir / "lean-oci")
    base = layout.simple_image(ref="v1", n_layers=10, layer_size=20_000, seed=19)
    skopeo_push(layout.path, "v1", ctx.registry, REPOSITORY, "v1")
    layout.extend(base, ref="v2", layer_size=10_000, seed=20)
    skopeo_push(layout.path, "v2", ctx.registry, REPOSITORY, "v2")
    bucket = fresh_bucket(ctx, "lean")
    table = fresh_table(ctx, bucket)
    counts: dict[str, Counter[tuple[str, str]]] = {}
    with CountingProxy(ctx.aws.endpoint) as aws, CountingProxy(ctx.registry.url) as ecr:
        env = ctx.aws_env(bucket=bucket, table=table, source_registry=ctx.registry.url)
        env |= {"AWS_ENDPOINT_URL": aws.endpoint, "AWS_ENDPOINT_URL_ECR": ecr.endpoint}
        for name, tag in (("first push", "v1"), ("incremental push", "v2"), ("replay", "v2")):
            aws.reset()
            ecr.reset()
            argv = python_module("ecr_backup", "replicate", f"{REPOSITORY}:{tag}", "--quiet")
            run_child(argv, env=env).check()
            counts[name] = aws.counts() + ecr.counts()
    return counts


def request_rows(counts: dict[str, Counter[tuple[str, str]]]) -> list[Row]:
    ceilings = {"incremental push": 15, "replay": 6}
    rows = []
    for name, counted in counts.items():
        detail = ", ".join(f"{s} {op} {n}" for (s, op), n in sorted(counted.items()))
        total = sum(counted.values())
        ceiling = ceilings.get(name)
        rows.append(
            Row(
                f"AWS requests, {name} (fresh CLI process): {detail}",
                str(total),
                f"<= {ceiling}" if ceiling else "",
                total <= ceiling if ceiling else None,
            )
        )
    return rows


# -- CPU per GiB --------------------------------------------------------------------------


def cpu_per_gib(ctx: BenchContext, repeat: int, *, tls: bool) -> CpuPerGib:
    from bench.backup_bench import fresh_bucket, fresh_table
    from bench.installed import installed_python
    from bench.restore_bench import restore_once, skopeo_once
    from devkit.counting_proxy import CountingProxy

    image = ctx.image
    python = installed_python(ctx.workdir / "installed")
    gib = image.layer_size / GiB
    with contextlib.ExitStack() as stack:
        aws_endpoint: dict[str, str] = {}
        if tls:
            proxy = stack.enter_context(CountingProxy(ctx.aws.endpoint, tls=True))
            aws_endpoint = {"AWS_ENDPOINT_URL": proxy.endpoint, "AWS_CA_BUNDLE": str(proxy.ca_path)}
        samples: dict[str, list[float]] = {k: [] for k in ("floor", "backup", "boto3")}
        samples |= {"restore": [], "skopeo": [], "startup": []}
        for n in range(repeat):
            floor = run_child(
                [sys.executable, "-c", HASH_PASS, str(image.layer_path)], env={}
            ).check()
            samples["floor"].append(floor.cpu_s)
            bucket = fresh_bucket(ctx, "cpu")
            table = fresh_table(ctx, bucket)
            env = ctx.aws_env(bucket=bucket, table=table, source_registry=ctx.registry.url)
            env |= aws_endpoint
            ref = f"{image.repository}:{image.tag}"
            backup = run_child(
                python_module("ecr_backup", "replicate", ref, "--quiet", python=python), env=env
            ).check()
            samples["backup"].append(backup.cpu_s)
            replay = run_child(
                python_module("ecr_backup", "replicate", ref, "--quiet", python=python), env=env
            ).check()
            samples["startup"].append(replay.cpu_s)
            upload_bucket = fresh_bucket(ctx, "cpu-boto3")
            upload = run_child(
                python_module(
                    "bench.backup_bench",
                    "upload",
                    str(image.layer_path),
                    upload_bucket,
                    "layer",
                    python=python,
                ),
                env=ctx.aws_env() | aws_endpoint,
            ).check()
            samples["boto3"].append(upload.cpu_s)
            restored, exact = restore_once(ctx, env, 1000 * (2 if tls else 1) + n, python=python)
            if not exact:
                raise RuntimeError("restore served another manifest")
            samples["restore"].append(restored.cpu_s)
            samples["skopeo"].append(skopeo_once(ctx, 3000 * (2 if tls else 1) + n).cpu_s)
            _say(
                f"{'TLS' if tls else 'HTTP'} round {n + 1}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in samples.items())
            )
    per_gib: Callable[[str], float] = lambda k: statistics.median(samples[k]) / gib  # noqa: E731
    return CpuPerGib(
        "TLS" if tls else "HTTP",
        per_gib("floor"),
        per_gib("backup"),
        per_gib("boto3"),
        per_gib("restore"),
        per_gib("skopeo"),
        statistics.median(samples["startup"]),
        gib,
    )


def cpu_rows(measured: CpuPerGib) -> list[Row]:
    m, on = measured, measured.transport
    plain = on == "HTTP"  # the targets are over plain HTTP; TLS is reported

    def ratio(value: float) -> str:
        return f"{value:.2f} s/GiB ({value / m.floor:.1f}x the floor)"

    return [
        Row(f"CPU per GiB, sha256 pass (the floor), {on}", f"{m.floor:.2f} s/GiB"),
        Row(
            f"CPU per GiB, backup, {on}",
            ratio(m.backup),
            f"<= {BACKUP_FLOOR_RATIO:.0f}x floor, <= boto3" if plain else "",
            m.backup <= BACKUP_FLOOR_RATIO * m.floor and m.backup <= m.boto3 if plain else None,
        ),
        Row(f"CPU per GiB, boto3 upload_file of the layer, {on}", ratio(m.boto3)),
        Row(
            f"CPU per GiB, restore, {on}",
            ratio(m.restore),
            f"<= {RESTORE_FLOOR_RATIO:.0f}x floor, <= skopeo" if plain else "",
            m.restore <= RESTORE_FLOOR_RATIO * m.floor and m.restore <= m.skopeo if plain else None,
        ),
        Row(f"CPU per GiB, skopeo copy of the image (registry on HTTP), {on}", ratio(m.skopeo)),
        Row(
            f"CPU of a replay (process start, imports, its requests; in every figure), {on}",
            f"{m.startup:.2f} s",
        ),
        Row(
            f"CPU per GiB, backup beyond its start-up (backup - replay), {on}",
            ratio((m.backup * m.gib - m.startup) / m.gib),
        ),
    ]


def run_bench(ctx: BenchContext, *, repeat: int = 3) -> list[Row]:
    """bench.run's hook: requests per push, then CPU per GiB over HTTP and over TLS."""
    _say("requests per push...")
    rows = request_rows(requests_per_push(ctx))
    for tls in (False, True):
        _say(f"CPU per GiB over {'TLS' if tls else 'HTTP'}...")
        rows += cpu_rows(cpu_per_gib(ctx, repeat, tls=tls))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone: moto, the registry and the image, then this benchmark only."""
    return standalone("python -m bench.lean_bench", run_bench, argv, size_mib=512, repeat=3)


if __name__ == "__main__":
    sys.exit(main())
