"""The on-call engineer's CLI against real parts: registry logins found where docker and
skopeo keep them, every command's --json against its schema, global options on either
side of the command, and progress only on a terminal."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import re
import select
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit import (
    EcrRegistry,
    LocalRegistry,
    MotoServer,
    OciLayoutBuilder,
    TokenServer,
    skopeo_inspect_raw,
    skopeo_push,
)
from devkit.net import free_port
from ecr_backup.schema import SCHEMAS
from ecr_backup.settings import MiB
from ecr_backup.storage.provision import ensure_bucket
from tests.helpers import parser_commands
from tests.integration.conftest import BackupTarget
from tests.integration.test_backup import ecr_event
from tests.integration.test_restore import at, back_up, ok, push_and_back_up, skopeo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def empty_registry(registry_storage: MotoServer, registry: EcrRegistry) -> Iterator[LocalRegistry]:
    """A new registry with its own user and password: the DR target."""
    with LocalRegistry(registry_storage, password=uuid.uuid4().hex, username="restorer") as target:
        yield target


def no_login_env(target: BackupTarget, home: Path) -> dict[str, str]:
    """The test's environment with every registry auth file pointed into `home`."""
    env = {**target.env, "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "ECR_BACKUP_TARGET_PASSWORD"):
        env.pop(name, None)
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecr_backup", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def serving(env: dict[str, str]) -> Any:
    """The document `serve --json` prints once it listens; the server is then stopped."""
    listen = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [sys.executable, "-m", "ecr_backup", "serve", "--listen", listen, "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("}"):
            line = server.stdout.readline()
            assert line, "serve ended before it printed its document"
            lines.append(line)
        return json.loads("".join(lines))
    finally:
        server.terminate()
        server.wait(timeout=10)


def docker_login(env: dict[str, str], registry: LocalRegistry) -> None:
    """What `docker login` leaves in config.json without a credential store."""
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    config = {"auths": {registry.host: {"auth": token}}}
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps(config))


def conforms(command: str, document: Any) -> Any:
    """The document validates against the command's schema and is exactly what the schema
    writes back (so times are to the second, digests full, no field unknown)."""
    schema = SCHEMAS[command]
    assert schema.dump_python(schema.validate_python(document), mode="json") == document
    return document


# -- registry logins ----------------------------------------------------------------------


def test_restore_with_the_login_only_in_docker_config(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    empty_registry: LocalRegistry,
    oci_images: OciLayoutBuilder,
    tmp_path: Path,
) -> None:
    image = oci_images.simple_image(ref="v1", n_layers=2, seed=801)
    push_and_back_up(backup_target, registry, oci_images, image, "login/app", "v1", at(1))
    env = no_login_env(backup_target, tmp_path)
    to = f"{empty_registry.host}/login/config"
    denied = run(env, "restore", "login/app:v1", "--to", to)
    assert denied.returncode != 0 and "wants a user name and password" in denied.stderr
    docker_login(env, empty_registry)
    restored = run(env, "restore", "login/app:v1", "--to", to)
    assert restored.returncode == 0, restored.stderr
    assert skopeo_inspect_raw(empty_registry, "login/config", "v1") == image.manifest


def test_restore_into_a_token_registry_with_an_identity_token_or_a_password(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    registry_storage: MotoServer,
    oci_images: OciLayoutBuilder,
    tmp_path: Path,
) -> None:
    """A registry with bearer tokens (Docker Hub, Harbor, ACR): the login docker saved as an
    identity token goes through the OAuth2 POST; a user and password through the GET."""
    image = oci_images.simple_image(ref="v1", n_layers=1, seed=821)
    push_and_back_up(backup_target, registry, oci_images, image, "token/app", "v1", at(1))
    env = no_login_env(backup_target, tmp_path)
    with TokenServer() as tokens, LocalRegistry(registry_storage, token_server=tokens) as target:
        # What `docker login` saves for ACR: a placeholder user beside the refresh token.
        placeholder = base64.b64encode(b"00000000-0000-0000-0000-000000000000:").decode()
        entry = {"auth": placeholder, "identitytoken": tokens.identity_token()}
        config = Path(env["DOCKER_CONFIG"]) / "config.json"
        config.write_text(json.dumps({"auths": {target.host: entry}}))
        restored = run(env, "restore", "token/app:v1", "--to", f"{target.host}/token/oauth")
        assert restored.returncode == 0, restored.stderr
        assert skopeo_inspect_raw(target, "token/oauth", "v1") == image.manifest
        oauth = [r for r in tokens.requests if r.method == "POST"]
        assert [r.grant_type for r in oauth] == ["refresh_token"]
        # Push to the target; pull from the source's name there, for mounts.
        assert oauth[0].scopes == ("repository:token/oauth:pull,push", "repository:token/app:pull")

        entry = {"identitytoken": "not-issued-by-this-server"}
        config.write_text(json.dumps({"auths": {target.host: entry}}))
        denied = run(env, "restore", "token/app:v1", "--to", f"{target.host}/token/denied")
        assert denied.returncode == 3
        (line,) = denied.stderr.splitlines()  # one line, naming the refusal
        assert line.endswith("/token: token request refused (HTTP 401)")

        docker_login(env, target)  # a user and password: the token comes by GET
        before = len(tokens.requests)
        restored = run(env, "restore", "token/app:v1", "--to", f"{target.host}/token/basic")
        assert restored.returncode == 0, restored.stderr
        assert {(r.method, r.grant_type) for r in tokens.requests[before:]} == {("GET", "basic")}


def test_restore_through_a_credential_helper_on_path(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    empty_registry: LocalRegistry,
    oci_images: OciLayoutBuilder,
    tmp_path: Path,
) -> None:
    image = oci_images.simple_image(ref="v1", n_layers=1, seed=811)
    push_and_back_up(backup_target, registry, oci_images, image, "helper/app", "v1", at(1))
    env = no_login_env(backup_target, tmp_path)
    bin_dir, asked = tmp_path / "bin", tmp_path / "asked"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-test"
    answer = json.dumps(
        {
            "ServerURL": empty_registry.host,
            "Username": empty_registry.username,
            "Secret": empty_registry.password,
        }
    )
    # The docker-credential-helpers protocol: `get`, the server on stdin, JSON on stdout.
    helper.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        f'read server; printf %s "$server" > {asked}\n'
        f'[ "$server" = "{empty_registry.host}" ] || '
        "{ echo 'credentials not found in native keychain'; exit 1; }\n"
        f"printf '%s' '{answer}'\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    config = {"auths": {}, "credHelpers": {empty_registry.host: "test"}}
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps(config))
    restored = run(env, "restore", "helper/app:v1", "--to", f"{empty_registry.host}/helper/app")
    assert restored.returncode == 0, restored.stderr
    assert asked.read_text() == empty_registry.host
    assert skopeo_inspect_raw(empty_registry, "helper/app", "v1") == image.manifest


# -- one schema, options anywhere -------------------------------------------------------------


def test_every_command_answers_json_in_its_schema_with_options_anywhere(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    empty_registry: LocalRegistry,
    oci_images: OciLayoutBuilder,
    moto_server: MotoServer,
    tmp_path: Path,
) -> None:
    env = no_login_env(backup_target, tmp_path)
    docker_login(env, empty_registry)
    image = oci_images.simple_image(ref="v1", n_layers=2, seed=821)
    push_and_back_up(backup_target, registry, oci_images, image, "json/app", "v1", at(1))
    other = oci_images.simple_image(ref="v2", n_layers=1, seed=825)
    other_digest = skopeo_push(oci_images.path, "v2", registry, "json/app", "v2")
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(ecr_event("json/app", other_digest, "v2")))
    assert other_digest == other.digest
    fresh = f"setup-{uuid.uuid4().hex[:12]}"

    def answer(*args: str) -> Any:
        # Before the command on odd calls, after it on even ones: both must work.
        before = len(seen) % 2 == 0
        argv = ["--json", *args] if before else [*args, "--json"]
        document = ok(run(env, *argv))
        command = args[0]
        seen.add(command)
        return conforms(command, document)

    seen: set[str] = set()
    answer("setup", "--bucket", fresh, "--table", fresh, "--no-tls-policy")
    answer("replicate", "json/app:v1")
    answer("handle-event", str(event_file))
    assert answer("repos") == [{"repository": "json/app"}]
    tags = answer("tags", "json/app")
    assert {t["tag"] for t in tags} == {"v1", "v2"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t["time"]) for t in tags)
    assert answer("history", "json/app:v1")[0]["action"] == "pushed"
    assert answer("show", "json/app:v1")["digest"] == image.digest
    restored = answer("restore", "json/app:v1", "--to", f"{empty_registry.host}/json/one")
    assert restored["report"]["tags_set"] == ["v1"]
    answer("export", "json/app:v1", "--oci", f"{tmp_path / 'layout'}:first")
    assert answer("verify")["ok"] is True
    answer("rebuild-index", "--table", f"rebuilt-{uuid.uuid4().hex[:8]}")
    backfilled = answer("backfill", "--repository-prefix", "json/")
    assert backfilled["missing"] == [] and backfilled["failed"] == []
    everything = answer(
        "restore", "--all-repositories", "--to-registry", empty_registry.host, "--dry-run"
    )
    assert everything["repositories"][0]["action"] == "would restore"
    assert answer("maintain")["ok"] is True
    assert answer("prune", "--dry-run")["objects"] == []  # everything is young and tagged
    assert answer("stats")["repositories"][0]["images_kept"] == 2
    assert answer("hold", "json/app:v1", "--reason", "audit")["held"] is True
    assert [h["reason"] for h in answer("holds", "json/app")] == ["audit"]
    assert answer("release", "json/app:v1")["held"] is False
    assert answer("surges") == {"surges": [], "holding": 0, "unreadable": []}
    assert answer("drill", "--sample", "1")["ok"] is True
    undeleted = answer(
        "undelete", "json/app", "--since", "2026-01-01T00:00:00Z", "--to-registry",
        empty_registry.host,
    )  # fmt: skip
    assert undeleted["images"] == [] and undeleted["skipped"] == []
    assert answer("status")["location"]["bucket"] == backup_target.settings.bucket
    assert answer("coverage")["covered"] is True
    conforms("serve", serving(env))
    seen.add("serve")

    assert seen == set(parser_commands()) == set(SCHEMAS)
    # Text and JSON name the same action; -v is ours, -vv (either side) adds botocore's.
    assert "pushed" in ok(run(env, "history", "json/app:v1"))
    assert "botocore" not in run(env, "history", "json/app:v1", "-v").stderr
    assert "botocore" in run(env, "-v", "history", "json/app:v1", "-v").stderr


def closed_stdout(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the CLI with a stdout whose reader has gone, as `ecr-backup ... | head -1` does
    once head has its line: the exit status and everything on stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ecr_backup", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the interpreter has even started: every write fails
    err = process.stderr.read().decode()
    return process.wait(timeout=300), err


def test_a_closed_stdout_ends_quietly_with_zero(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
    tmp_path: Path,
) -> None:
    image = oci_images.simple_image(ref="v1", n_layers=2, seed=861)
    push_and_back_up(backup_target, registry, oci_images, image, "pipe/app", "v1", at(1))
    env = backup_target.env
    for args in (
        ["tags", "pipe/app"],
        ["--json", "history", "pipe/app:v1"],
        ["show", "pipe/app:v1", "--json"],
        ["repos"],
        ["stats"],
        ["export", "pipe/app:v1", "--oci-archive", "-"],
        ["tags", "--help"],
    ):
        assert closed_stdout(env, *args) == (0, ""), args
    # The same commands with a reader: the output was there to lose.
    assert "pipe/app" in ok(run(env, "repos"))


# -- disaster recovery ----------------------------------------------------------------------


def test_disaster_recovery_from_a_copied_bucket_into_an_empty_registry(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    empty_registry: LocalRegistry,
    oci_images: OciLayoutBuilder,
    moto_server: MotoServer,
    tmp_path: Path,
) -> None:
    api_v1 = oci_images.simple_image(ref="api1", n_layers=2, seed=831)
    api_v2 = oci_images.extend(api_v1, ref="api2", seed=835)
    web = oci_images.multi_arch_image(ref="web", seed=839)
    expected = {
        ("dr/api", "v1"): push_and_back_up(
            backup_target, registry, oci_images, api_v1, "dr/api", "v1", at(1)
        ),
        ("dr/api", "v2"): push_and_back_up(
            backup_target, registry, oci_images, api_v2, "dr/api", "v2", at(2)
        ),
        ("dr/web", "latest"): push_and_back_up(
            backup_target, registry, oci_images, web, "dr/web", "latest", at(3)
        ),
    }
    back_up(backup_target, "dr/api", api_v1.digest, "old", at(4))

    # As an AWS Backup restore would: every object copied into a bucket of another name.
    s3 = moto_server.client("s3")
    restored_bucket = f"vault-restore-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, restored_bucket, region=moto_server.region, tls_only=False)
    source = backup_target.settings.bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=source, Key=item["Key"])["Body"].read()
            # Object Lock buckets refuse a write without a checksum.
            s3.put_object(
                Bucket=restored_bucket, Key=item["Key"], Body=body, ChecksumAlgorithm="SHA256"
            )
    env = no_login_env(backup_target, tmp_path)
    docker_login(env, empty_registry)
    new_table = f"dr-index-{uuid.uuid4().hex[:8]}"
    location = ["--bucket", restored_bucket, "--table", new_table, "--prefix", "ecr/"]

    rebuilt = ok(run(env, "rebuild-index", *location, "--json"))
    assert rebuilt["created_table"] and rebuilt["table"] == new_table
    assert rebuilt["bucket"] == restored_bucket and rebuilt["records"] == 4

    restore_all = ["restore", "--all-repositories", "--to-registry", empty_registry.host]
    first = ok(run(env, *restore_all, "--repository-prefix", "dr/", *location, "--json"))
    assert [r["repository"] for r in first["repositories"]] == ["dr/api", "dr/web"]
    assert first["failed"] == 0 and first["tags"] == 4
    for (repository, tag), digest in expected.items():
        raw = skopeo_inspect_raw(empty_registry, repository, tag)
        assert hashlib_digest(raw) == digest
    assert hashlib_digest(skopeo_inspect_raw(empty_registry, "dr/api", "old")) == api_v1.digest
    creds = f"{empty_registry.username}:{empty_registry.password}"
    skopeo(
        "copy", "--all", "--src-tls-verify=false", "--src-creds", creds,
        f"docker://{empty_registry.host}/dr/web:latest", f"oci:{tmp_path / 'web'}:latest",
    )  # fmt: skip

    again = run(env, *restore_all, *location)
    assert again.returncode == 0, again.stderr
    assert "2 of 2 repositories restored" in again.stdout and "0 B uploaded" in again.stdout


def hashlib_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- progress ---------------------------------------------------------------------------------


def in_terminal(env: dict[str, str], *args: str, stdout_to_pipe: bool = False) -> str:
    """Run the CLI with a pty as its terminal; everything the terminal showed."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "ecr_backup", *args],
        stdin=terminal,
        stdout=subprocess.PIPE if stdout_to_pipe else terminal,
        stderr=terminal,
        env={**env, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(terminal)
    shown = bytearray()
    while True:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if ready:
            try:
                data = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not data:
                break
            shown += data
        elif process.poll() is not None:
            break
    os.close(controller)
    assert process.wait(timeout=300) == 0, shown.decode(errors="replace")
    if process.stdout is not None:
        process.stdout.close()
    return shown.decode(errors="replace")


PROGRESS = re.compile(r"(replicate|export|restore).*MiB.*/s")


def test_progress_on_a_terminal_only(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    oci_images: OciLayoutBuilder,
    tmp_path: Path,
) -> None:
    big = oci_images.simple_image(ref="big", n_layers=1, layer_size=50 * MiB, seed=841)
    small = oci_images.simple_image(ref="small", n_layers=1, layer_size=MiB, seed=845)
    skopeo_push(oci_images.path, "big", registry, "progress/app", "big")
    skopeo_push(oci_images.path, "small", registry, "progress/app", "small")
    env = backup_target.env

    shown = in_terminal(env, "replicate", "progress/app:big")
    assert PROGRESS.search(shown), shown
    assert re.search(r"/5\d\.\d MiB", shown), shown  # the 50 MiB layer, in bytes
    assert in_terminal(env, "replicate", "progress/app:small", "--quiet") == ""

    shown = in_terminal(env, "export", "progress/app:big", "--oci", str(tmp_path / "a"))
    assert PROGRESS.search(shown), shown
    quiet = in_terminal(env, "-q", "export", "progress/app:big", "--oci", str(tmp_path / "b"))
    assert quiet == ""
    piped = in_terminal(
        env, "export", "progress/app:big", "--oci", str(tmp_path / "c"), stdout_to_pipe=True
    )
    assert not PROGRESS.search(piped) and "MiB/s" not in piped, piped
    assert "MB/s" not in shown, shown  # one unit family: MiB and MiB/s
    # A restore's bar names the repository it is for.
    to = f"{registry.host}/progress/copy"
    registry.ensure_repository("progress/copy")  # the ECR stand-in refuses unknown ones
    shown = in_terminal(env, "restore", "progress/app:big", "--to", to, "--to-auth", "ecr")
    assert re.search(r"restore progress/app.*MiB", shown), shown
    assert small.digest and big.digest


# -- TLS -------------------------------------------------------------------------------------


def test_tls_registry_needs_its_ca_or_insecure(
    backup_target: BackupTarget,
    registry: EcrRegistry,
    registry_storage: MotoServer,
    oci_images: OciLayoutBuilder,
    tmp_path: Path,
) -> None:
    image = oci_images.simple_image(ref="v1", n_layers=1, seed=851)
    push_and_back_up(backup_target, registry, oci_images, image, "tls/app", "v1", at(1))
    with LocalRegistry(registry_storage, password="tls-pw", username="tls", tls=True) as secure:
        env = no_login_env(backup_target, tmp_path)
        docker_login(env, secure)
        to = f"https://{secure.host}/tls/app"
        refused = run(env, "restore", "tls/app:v1", "--to", to)
        assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
        assert "--ca-bundle" in refused.stderr, refused.stderr
        for how in (["--insecure"], ["--ca-bundle", str(secure.ca_path)]):
            restored = run(env, "restore", "tls/app:v1", "--to", f"{to}:{how[0][2:]}", *how)
            assert restored.returncode == 0, restored.stderr
        restored = run({**env, "SSL_CERT_FILE": str(secure.ca_path)}, "restore", "tls/app:v1",
                       "--to", f"{to}:from-env")  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        for tag in ("insecure", "ca-bundle", "from-env"):
            assert skopeo_inspect_raw(secure, "tls/app", tag) == image.manifest
