"""The SAM app as shipped: the templates lint, `sam build` succeeds, and the BUILT function
(its layer and code from the build directory, not this repository's sources) backs up an
SQS batch of ECR events from the real registry into the moto server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devkit import BuiltManifest, EcrRegistry, MotoServer, OciLayoutBuilder, skopeo_push
from devkit.events import sqs_record
from ecr_backup.oci.digest import Digest
from tests.integration.conftest import BackupTarget

ROOT = Path(__file__).resolve().parents[2]
# moto's default account (the one the ECR proxy hands tokens for).
ACCOUNT = "123456789012"
BLOB_GET = r"^/v2/{repo}/blobs/sha256:[0-9a-f]{{64}}$"


def tool_env() -> dict[str, str]:
    """The venv's bin (sam, cfn-lint) and, as the Makefile does, the directory of the
    interpreter scripts/find-python picks: `sam build` runs `python3.13` from PATH."""
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    dirs = [str(Path(sys.executable).parent)]
    found = subprocess.run(
        [str(ROOT / "scripts" / "find-python")], capture_output=True, text=True, check=False
    )
    if found.returncode == 0 and found.stdout.strip():
        dirs.append(str(Path(found.stdout.strip()).parent))
    env["PATH"] = os.pathsep.join([*dirs, env.get("PATH", "")])
    return env


def run_tool(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.sam
def test_sam_validate_lint_passes() -> None:
    result = run_tool("sam", "validate", "--lint", "--template-file", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_passes_on_every_template() -> None:
    templates = [
        "template.yaml",
        *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("templates/*.yaml")),
    ]
    assert "templates/source-account.yaml" in templates
    result = run_tool("cfn-lint", *templates)
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass(frozen=True)
class Build:
    dir: Path

    @property
    def layer(self) -> Path:
        return self.dir / "SharedLayer" / "python"  # Lambda mounts it as /opt/python

    @property
    def function(self) -> Path:
        return self.dir / "ReplicateFunction"  # Lambda's /var/task

    @property
    def reconcile_function(self) -> Path:
        return self.dir / "ReconcileFunction"

    def function_dir(self, handler: str) -> Path:
        """The built function whose handler module is `handler` (replicate, reconcile...)."""
        return self.dir / f"{handler.capitalize()}Function"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """One `sam build` for the module, x86_64 so that this host can import the wheels."""
    had_sam_dir = (ROOT / ".aws-sam").exists()
    work = tmp_path_factory.mktemp("sam")
    result = run_tool(
        "sam",
        "build",
        "--template-file",
        "template.yaml",
        "--build-dir",
        str(work / "build"),
        "--cache-dir",
        str(work / "cache"),
        # Cached builds keep dependencies in ./.aws-sam/deps, i.e. in the repository.
        "--no-cached",
        "--parameter-overrides",
        "Architecture=x86_64",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if not had_sam_dir:
        assert not (ROOT / ".aws-sam").exists(), "sam build wrote into the repository"
    return Build(work / "build")


@pytest.mark.sam
def test_build_packages_the_library_and_its_wheels_in_the_layer(built: Build) -> None:
    assert (built.function / "replicate.py").is_file()
    assert not (built.function / "ecr_backup").exists()  # the library comes from the layer
    assert (built.layer / "ecr_backup" / "__init__.py").is_file()
    assert (built.layer / "ecr_backup" / "backup" / "service.py").read_bytes() == (
        ROOT / "shared" / "ecr_backup" / "backup" / "service.py"
    ).read_bytes()
    for package in ("boto3", "botocore", "pydantic", "aws_lambda_powertools"):
        assert (built.layer / package).is_dir(), package
    # The X-Ray SDK (Powertools' Tracer) is gone: Lambda's active tracing records invocations.
    assert not (built.layer / "aws_xray_sdk").exists()
    (core,) = built.layer.glob("pydantic_core/_pydantic_core.*.so")
    assert "x86_64" in core.name  # built for the Architecture override, not the host default
    built_template = (built.dir / "template.yaml").read_text()
    assert "ContentUri: SharedLayer" in built_template


# The Lambda runtime's view: /var/task first, then /opt/python; no site-packages (-S), no
# PYTHON* variables or user site (-I), so this repository's editable install is invisible.
DRIVER = textwrap.dedent(
    """
    import importlib, json, sys
    function_dir, layer_dir, out, module_name = sys.argv[1:5]
    sys.path[:0] = [function_dir, layer_dir]

    import boto3, ecr_backup, pydantic
    function = importlib.import_module(module_name)

    class Context:
        function_name = "ecr-backup-replicate"
        memory_limit_in_mb = 1024
        invoked_function_arn = (
            "arn:aws:lambda:us-east-1:123456789012:function:ecr-backup-replicate"
        )
        aws_request_id = "sam-app-test"

        def get_remaining_time_in_millis(self):
            return 900_000

    response = function.handler(json.load(sys.stdin), Context())
    modules = {m.__name__: m.__file__ for m in (boto3, ecr_backup, pydantic, function)}
    with open(out, "w") as handle:
        json.dump({"response": response, "modules": modules}, handle)
    """
)


@dataclass
class Invocation:
    response: dict[str, Any]
    modules: dict[str, str]
    stdout: str


def invoke_built(
    built: Build,
    tmp_path: Path,
    env: dict[str, str],
    event: dict[str, Any],
    *,
    function: str = "replicate",
) -> Invocation:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "out.json"
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(driver),
            str(built.function_dir(function)),
            str(built.layer),
            str(out),
            function,
        ],
        input=json.dumps(event),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(out.read_text())
    return Invocation(document["response"], document["modules"], result.stdout)


def lambda_env(target: BackupTarget, moto: MotoServer, registry: EcrRegistry) -> dict[str, str]:
    """What template.yaml sets, plus what points the AWS SDK and the registry at local parts."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ENDPOINT_URL": moto.endpoint,
        "AWS_ENDPOINT_URL_ECR": registry.url,  # ECR's token API through the proxy
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": moto.region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "ECR_BACKUP_BUCKET": target.settings.bucket,
        "ECR_BACKUP_TABLE": target.settings.table or "",
        "ECR_BACKUP_PREFIX": target.settings.prefix,
        "ECR_BACKUP_SOURCE_REGISTRY": registry.url,
        "ECR_BACKUP_CONCURRENCY": "4",
        "POWERTOOLS_SERVICE_NAME": "ecr-backup",
        "POWERTOOLS_METRICS_NAMESPACE": "EcrBackup",
        "POWERTOOLS_TRACE_DISABLED": "1",
    }


def ecr_event(repository: str, digest: str, tag: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "result": "SUCCESS",
            "repository-name": repository,
            "image-digest": digest,
            "action-type": "PUSH",
            "image-tag": tag,
        },
    }


@pytest.fixture
def pushed(registry: EcrRegistry, oci_images: OciLayoutBuilder) -> tuple[str, list[BuiltManifest]]:
    """Two images sharing their base layers, pushed with skopeo to a fresh repository."""
    repository = f"sam/app-{uuid.uuid4().hex[:8]}"
    first = oci_images.simple_image(ref="v1", n_layers=2, layer_size=200_000, seed=71)
    second = oci_images.extend(first, ref="v2", layer_size=100_000, seed=79)
    for image in (first, second):
        assert (
            skopeo_push(oci_images.path, image.ref, registry, repository, image.ref) == image.digest
        )
    return repository, [first, second]


@pytest.mark.sam
@pytest.mark.integration
def test_built_handler_backs_up_pushes_and_fails_only_the_bad_record(
    built: Build,
    tmp_path: Path,
    moto_server: MotoServer,
    registry: EcrRegistry,
    backup_target: BackupTarget,
    pushed: tuple[str, list[BuiltManifest]],
) -> None:
    repository, (first, second) = pushed
    event = {
        "Records": [
            sqs_record(ecr_event(repository, first.digest, "v1"), "push-v1"),
            sqs_record('{"detail-type": "ECR Image Action", "truncated', "garbage"),
            sqs_record(ecr_event(repository, second.digest, "v2"), "push-v2"),
        ]
    }
    gets_before = registry.count_requests("GET", BLOB_GET.format(repo=repository))

    run = invoke_built(built, tmp_path, lambda_env(backup_target, moto_server, registry), event)

    # The code that ran is the build output, not this checkout.
    for name, path in run.modules.items():
        assert Path(path).is_relative_to(built.dir), (name, path)
    assert run.response == {"batchItemFailures": [{"itemIdentifier": "garbage"}]}

    # Every blob and manifest of both images is in the bucket under its digest.
    wanted = {d.digest for image in (first, second) for d in image.blobs}
    wanted |= {first.digest, second.digest}
    prefix = f"{backup_target.settings.prefix}blobs/sha256/"
    keys = set(backup_target.blob_keys())
    assert keys == {prefix + d.removeprefix("sha256:") for d in wanted}
    for key in keys:
        assert hashlib.sha256(backup_target.read(key)).hexdigest() == key.removeprefix(prefix)
    index = backup_target.services.index
    for image in (first, second):
        assert index.manifest(Digest.parse(image.digest)) is not None
    tags = {t.tag: str(t.digest) for t in index.tags(repository)}
    assert tags == {"v1": first.digest, "v2": second.digest}

    # Incremental through the built artifact too: the shared base layers were fetched once.
    blobs_fetched = registry.wait_for_request_count(
        "GET",
        BLOB_GET.format(repo=repository),
        gets_before + len(wanted - {first.digest, second.digest}),
    )
    assert blobs_fetched - gets_before == len(wanted) - 2

    # The handler's structured logs and EMF metrics came out of the built Powertools.
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert any(line.get("message") == "image backed up" for line in lines)
    emf = [line for line in lines if "_aws" in line]
    assert emf and emf[-1]["RecordsFailed"] == [1.0]


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        messages.extend(batch)
    return messages


def emf_sum(stdout: str, metric: str) -> float:
    """The sum of a metric over the stack-wide EMF documents an invocation printed (not
    the per-registry ones, with `account` and `region`, which count the same again)."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    values = [
        line[metric]
        for line in lines
        if "_aws" in line and metric in line and "account" not in line
    ]
    assert values, f"no {metric} metric"
    return sum(sum(v) if isinstance(v, list) else v for v in values)


@pytest.mark.sam
@pytest.mark.integration
def test_built_reconcile_handler_fans_out_and_enqueues_what_events_missed(
    built: Build,
    tmp_path: Path,
    moto_server: MotoServer,
    registry: EcrRegistry,
    backup_target: BackupTarget,
    oci_images: OciLayoutBuilder,
) -> None:
    prefix = f"recon{uuid.uuid4().hex[:8]}/"
    held = oci_images.simple_image(ref="held", n_layers=1, layer_size=50_000, seed=91)
    missed = oci_images.simple_image(ref="missed", n_layers=1, layer_size=50_000, seed=93)
    skopeo_push(oci_images.path, "held", registry, prefix + "held", "v1")
    skopeo_push(oci_images.path, "missed", registry, prefix + "missed", "v1")  # no event
    event = ecr_event(prefix + "held", held.digest, "v1")
    backup = invoke_built(
        built,
        tmp_path,
        lambda_env(backup_target, moto_server, registry),
        {"Records": [sqs_record(event)]},
    )
    assert backup.response == {"batchItemFailures": []}
    sqs = moto_server.client("sqs")
    reconcile_queue = sqs.create_queue(QueueName=f"reconcile-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    replicate_queue = sqs.create_queue(QueueName=f"replicate-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    env = {
        **lambda_env(backup_target, moto_server, registry),
        "ECR_BACKUP_RECONCILE_QUEUE_URL": reconcile_queue,
        "ECR_BACKUP_REPLICATE_QUEUE_URL": replicate_queue,
        "ECR_BACKUP_REPOSITORY_PREFIX": prefix,
        "ECR_BACKUP_INTERVAL_MINUTES": "1440",
    }
    requests_before = len(registry.logged_requests())

    schedule = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:{ACCOUNT}:rule/reconcile"],
        "detail": {},
    }
    started = invoke_built(built, tmp_path, env, schedule, function="reconcile")
    for name, path in started.modules.items():
        assert Path(path).is_relative_to(built.dir), (name, path)
    assert started.response == {"repositories": 2}
    tasks = receive_all(sqs, reconcile_queue)
    assert sorted(json.loads(m["Body"])["repository"] for m in tasks) == [
        prefix + "held",
        prefix + "missed",
    ]

    run = invoke_built(
        built,
        tmp_path,
        env,
        {"Records": [sqs_record(m["Body"], m["MessageId"]) for m in tasks]},
        function="reconcile",
    )
    assert run.response == {"batchItemFailures": []}
    assert emf_sum(run.stdout, "ImagesMissing") == 1
    assert emf_sum(run.stdout, "ImagesEnqueued") == 1
    assert emf_sum(run.stdout, "ImagesStillMissing") == 0
    # Listing and comparing fetched nothing from the registry.
    time.sleep(1.0)  # a late log line would land by now
    assert len(registry.logged_requests()) == requests_before

    (message,) = receive_all(sqs, replicate_queue)
    body = json.loads(message["Body"])
    assert (body["detail"]["image-digest"], body["detail"]["image-tag"]) == (missed.digest, "v1")
    copied = invoke_built(
        built,
        tmp_path,
        lambda_env(backup_target, moto_server, registry),
        {"Records": [sqs_record(message["Body"], message["MessageId"])]},
    )
    assert copied.response == {"batchItemFailures": []}
    assert backup_target.services.index.manifest(Digest.parse(missed.digest)) is not None


@pytest.mark.sam
@pytest.mark.integration
def test_built_serve_handler_answers_function_url_events(
    built: Build,
    tmp_path: Path,
    moto_server: MotoServer,
    registry: EcrRegistry,
    backup_target: BackupTarget,
    pushed: tuple[str, list[BuiltManifest]],
) -> None:
    """The registry behind a Function URL, from the build: users from the secret, manifests
    served, blobs redirected to presigned URLs that fetch the exact bytes, metrics."""
    import bcrypt
    import urllib3

    repository, (first, _) = pushed
    backup = invoke_built(
        built,
        tmp_path,
        lambda_env(backup_target, moto_server, registry),
        {"Records": [sqs_record(ecr_event(repository, first.digest, "v1"))]},
    )
    assert backup.response == {"batchItemFailures": []}
    hashed = bcrypt.hashpw(b"pull-pass", bcrypt.gensalt(rounds=4)).decode()
    secrets = moto_server.client("secretsmanager")
    secret = secrets.create_secret(
        Name=f"serve-users-{uuid.uuid4().hex[:8]}", SecretString=f"# users\npuller:{hashed}\n"
    )["ARN"]
    env = {
        **lambda_env(backup_target, moto_server, registry),
        "ECR_BACKUP_SERVE_USERS_SECRET": secret,
    }
    authorization = "Basic " + base64.b64encode(b"puller:pull-pass").decode()

    def url_event(method: str, path: str, **headers: str) -> dict[str, Any]:
        return {
            "version": "2.0",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {"host": "abc.lambda-url.us-east-1.on.aws", **headers},
            "requestContext": {"http": {"method": method, "path": path}},
            "isBase64Encoded": False,
        }

    anonymous = invoke_built(built, tmp_path, env, url_event("GET", "/v2/"), function="serve")
    for name, path in anonymous.modules.items():
        assert Path(path).is_relative_to(built.dir), (name, path)
    assert anonymous.response["statusCode"] == 401
    assert anonymous.response["headers"]["WWW-Authenticate"] == 'Basic realm="ecr-backup"'

    manifest = invoke_built(
        built,
        tmp_path,
        env,
        url_event("GET", f"/v2/{repository}/manifests/v1", authorization=authorization),
        function="serve",
    )
    answer = manifest.response
    assert answer["statusCode"] == 200 and not answer["isBase64Encoded"]
    assert hashlib.sha256(answer["body"].encode()).hexdigest() == first.digest.split(":")[1]
    assert answer["headers"]["Docker-Content-Digest"] == first.digest
    assert emf_sum(manifest.stdout, "Pulls") == 1
    assert emf_sum(manifest.stdout, "ManifestsServed") == 1

    layer = first.layers[0].descriptor
    blob = invoke_built(
        built,
        tmp_path,
        env,
        url_event("GET", f"/v2/{repository}/blobs/{layer.digest}", authorization=authorization),
        function="serve",
    )
    assert blob.response["statusCode"] == 307 and blob.response["body"] == ""
    assert emf_sum(blob.stdout, "Redirects") == 1
    fetched = urllib3.request("GET", blob.response["headers"]["Location"], timeout=30)
    assert fetched.status == 200
    assert hashlib.sha256(fetched.data).hexdigest() == layer.digest.split(":")[1]

    missing = invoke_built(
        built,
        tmp_path,
        env,
        url_event("GET", f"/v2/{repository}/manifests/nope", authorization=authorization),
        function="serve",
    )
    assert missing.response["statusCode"] == 404
    assert emf_sum(missing.stdout, "ClientErrors") == 1
