"""Registry logins where skopeo, podman, crane and docker keep them.

Search order (the first file that knows the host wins):

1. `$REGISTRY_AUTH_FILE` (containers-auth.json format),
2. `$XDG_RUNTIME_DIR/containers/auth.json` (podman, skopeo, buildah),
3. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.

Inside one file, as docker does: a `credHelpers` entry for the host, else the
`credsStore`, else the `auths` entry. A helper is run as `docker-credential-<name> get`
with the server address on stdin and answers `{"Username": ..., "Secret": ...}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecr_backup.errors import ConfigurationError
from ecr_backup.settings import CREDENTIAL_HELPER_TIMEOUT_S

log = logging.getLogger(__name__)

# docker-credential-helpers' own "not found" message (credentials/error.go).
_HELPER_NOT_FOUND = "credentials not found in native keychain"


@dataclass(frozen=True)
class RegistryLogin:
    username: str
    password: str
    source: str  # the file or helper it came from, for logs and errors
    # An OAuth2 refresh token (docker's "identitytoken", a helper's "<token>" user): when
    # set, it is what logs in, and the user name and password are not used.
    identity_token: str | None = None

    def __repr__(self) -> str:  # never a secret, not even in a debug log
        return f"RegistryLogin(username={self.username!r}, source={self.source!r})"


HelperRunner = Callable[[str, str], subprocess.CompletedProcess[str]]


def run_helper(program: str, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program, "get"],
        input=server,
        capture_output=True,
        text=True,
        timeout=CREDENTIAL_HELPER_TIMEOUT_S,
        check=False,
    )


def auth_files(environ: Mapping[str, str]) -> list[Path]:
    """The files consulted, in order."""
    files: list[Path] = []
    if environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(environ["REGISTRY_AUTH_FILE"]))
    if environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    if environ.get("DOCKER_CONFIG"):
        files.append(Path(environ["DOCKER_CONFIG"]) / "config.json")
    elif environ.get("HOME"):
        files.append(Path(environ["HOME"]) / ".docker" / "config.json")
    return files


def find_login(
    host: str,
    environ: Mapping[str, str] | None = None,
    *,
    runner: HelperRunner = run_helper,
) -> RegistryLogin | None:
    """The login for `host` (HOST[:PORT]) from the first file that has one, else None."""
    environ = os.environ if environ is None else environ
    for path in auth_files(environ):
        config = _load(path)
        if config is None:
            continue
        login = _login_in(config, host, str(path), runner)
        if login is not None:
            log.debug("registry login for %s from %s", host, login.source)
            return login
    return None


def _load(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigurationError(f"cannot read registry auth file {path}: {e.strerror}") from e
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"registry auth file {path} is not valid JSON: {e}") from e
    if not isinstance(document, dict):
        raise ConfigurationError(f"registry auth file {path} is not a JSON object")
    return document


def _login_in(
    config: dict[str, Any], host: str, path: str, runner: HelperRunner
) -> RegistryLogin | None:
    helper = next(_matching(config.get("credHelpers") or {}, host), None)
    if helper is not None:
        return _from_helper(str(helper[1]), helper[0], runner)
    if config.get("credsStore"):
        login = _from_helper(str(config["credsStore"]), host, runner)
        if login is not None:
            return login
    for _key, entry in _matching(config.get("auths") or {}, host):
        login = _from_entry(entry, path, host)
        if login is not None:
            return login
    return None


def _matching(entries: Mapping[str, Any], host: str) -> Iterator[tuple[str, Any]]:
    """Entries keyed by the host, with or without a scheme or path ("https://h:5000/v2/")."""
    for key, value in entries.items():
        if _hostname(key) == host:
            yield key, value


def _hostname(key: str) -> str:
    rest = key.split("://", 1)[1] if "://" in key else key
    return rest.split("/", 1)[0]


def _from_entry(entry: Any, path: str, host: str) -> RegistryLogin | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("identitytoken"):
        # docker keeps an "auth" beside it (a placeholder user, no password); the token wins.
        return RegistryLogin("<token>", "", path, identity_token=str(entry["identitytoken"]))
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise ConfigurationError(f"{path}: the auth entry for {host} is not base64") from e
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ConfigurationError(f"{path}: the auth entry for {host} is not USER:PASSWORD")
        return RegistryLogin(username, password, path)
    if entry.get("username"):
        return RegistryLogin(str(entry["username"]), str(entry.get("password", "")), path)
    return None


def _from_helper(name: str, server: str, runner: HelperRunner) -> RegistryLogin | None:
    program = f"docker-credential-{name}"
    if shutil.which(program) is None:
        raise ConfigurationError(
            f"credential helper {program} is configured for {_hostname(server)} but not on PATH"
        )
    try:
        answer = runner(program, server)
    except (OSError, subprocess.SubprocessError) as e:
        raise ConfigurationError(f"{program} get failed: {e}") from e
    if answer.returncode != 0:
        if _HELPER_NOT_FOUND in (answer.stdout + answer.stderr).lower():
            return None
        detail = (answer.stderr or answer.stdout).strip().splitlines()
        raise ConfigurationError(
            f"{program} get failed (exit {answer.returncode})"
            + (f": {detail[-1]}" if detail else "")
        )
    try:
        document = json.loads(answer.stdout)
        username, secret = str(document["Username"]), str(document["Secret"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigurationError(f"{program} get answered something other than credentials") from e
    if username == "<token>":  # the helpers' way of returning an identity token
        return RegistryLogin(username, "", program, identity_token=secret)
    return RegistryLogin(username, secret, program)
