"""Logins written by the real `skopeo login` and `podman login` are found as podman finds
them: the most specific key wins (host/ns/repo over host/ns over host), and a restore to
the registry authenticates with the login kept for its repository."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from devkit.servers import LocalRegistry, MotoServer
from ecr_backup.registry.auth import ChallengeCredentials
from ecr_backup.registry.credentials import find_login
from ecr_backup.restore.target import parse_target, target_credentials

pytestmark = pytest.mark.integration

HOST_USER, HOST_PASSWORD = "host-user", uuid.uuid4().hex
REPO_USER, REPO_PASSWORD = "repo-user", uuid.uuid4().hex


class TwoUserRegistry(LocalRegistry):
    """A basic-auth registry that knows a second user, so that two logins can differ."""

    def config(self) -> dict[str, Any]:
        config = super().config()
        htpasswd = Path(config["auth"]["htpasswd"]["path"])
        hashed = bcrypt.hashpw(REPO_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        with htpasswd.open("a") as lines:
            lines.write(f"{REPO_USER}:{hashed}\n")
        return config


@pytest.fixture(scope="module")
def registry(registry_storage: MotoServer) -> Iterator[TwoUserRegistry]:
    missing = [b for b in ("skopeo", "podman") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}")
    with TwoUserRegistry(registry_storage, password=HOST_PASSWORD, username=HOST_USER) as reg:
        yield reg


def login(tool: str, authfile: Path, key: str, user: str, password: str) -> None:
    flags = ["--authfile", str(authfile), "--tls-verify=false", "--username", user]
    answer = subprocess.run(
        [tool, "login", *flags, "--password-stdin", key],
        input=password,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr


@pytest.mark.parametrize(("host_tool", "repo_tool"), [("skopeo", "podman"), ("podman", "skopeo")])
def test_logins_written_by_skopeo_and_podman_resolve_most_specific_first(
    registry: TwoUserRegistry, tmp_path: Path, host_tool: str, repo_tool: str
) -> None:
    authfile = tmp_path / "auth.json"
    login(host_tool, authfile, registry.host, HOST_USER, HOST_PASSWORD)
    login(repo_tool, authfile, f"{registry.host}/team/app", REPO_USER, REPO_PASSWORD)
    env = {"REGISTRY_AUTH_FILE": str(authfile)}

    def found(key: str) -> tuple[str, str] | None:
        entry = find_login(key, env)
        return (entry.username, entry.password) if entry else None

    assert found(f"{registry.host}/team/app") == (REPO_USER, REPO_PASSWORD)
    assert found(f"{registry.host}/team/web") == (HOST_USER, HOST_PASSWORD)
    assert found(registry.host) == (HOST_USER, HOST_PASSWORD)


def test_podmans_runtime_file_is_read_before_dockers(
    registry: TwoUserRegistry, tmp_path: Path
) -> None:
    runtime, home = tmp_path / "run", tmp_path / "home"
    login("podman", runtime / "containers" / "auth.json", registry.host, REPO_USER, REPO_PASSWORD)
    login("skopeo", home / ".docker" / "config.json", registry.host, HOST_USER, HOST_PASSWORD)
    env = {"XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)}
    entry = find_login(registry.host, env)
    assert entry is not None and entry.username == REPO_USER
    assert entry.source == str(runtime / "containers" / "auth.json")
    del env["XDG_RUNTIME_DIR"]  # then docker's file, as podman reads it next
    entry = find_login(registry.host, env)
    assert entry is not None and entry.username == HOST_USER


def test_a_restore_target_authenticates_with_its_repositorys_login(
    registry: TwoUserRegistry, tmp_path: Path
) -> None:
    authfile = tmp_path / "auth.json"
    login("skopeo", authfile, registry.host, HOST_USER, HOST_PASSWORD)
    login("podman", authfile, f"{registry.host}/team/app", REPO_USER, REPO_PASSWORD)
    target = parse_target(f"{registry.host}/team/app:v1")
    credentials = target_credentials(
        target, login_finder=lambda key: find_login(key, {"REGISTRY_AUTH_FILE": str(authfile)})
    )
    assert isinstance(credentials, ChallengeCredentials)
    assert credentials._username == REPO_USER
