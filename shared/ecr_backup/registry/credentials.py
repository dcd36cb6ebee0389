"""Registry logins where skopeo, podman, buildah, crane and docker keep them, found as
containers/image finds them (containers-auth.json(5); pkg/docker/config/config.go).

The files, in order; the first that has a login for the image wins:

1. `$REGISTRY_AUTH_FILE` when set, and then no other file (podman and skopeo make it
   their --authfile, which replaces the search);
2. `$XDG_RUNTIME_DIR/containers/auth.json`, else `/run/containers/<uid>/auth.json`
   (podman's default for root is `/run/containers/0/auth.json`);
3. `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/containers/auth.json`);
4. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`;
5. `~/.dockercfg` (docker's legacy format: the `auths` map alone, host keys only);
6. for root, `/etc/containers/auth.json` (first when run by systemd, last otherwise),
   refused when group or others may read it, as podman refuses it.

Inside one file: a `credHelpers` entry for the host, else docker's `credsStore`, else
the most specific `auths` key (`host/ns/repo`, then `host/ns`, then `host`), else a key
that names the host in URL form (`https://host/v1/`). A helper is run as
`docker-credential-<name> get` with the server address on stdin and answers
`{"Username": ..., "Secret": ...}`.
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

SYSTEM_AUTH_FILE = Path("/etc/containers/auth.json")
LEGACY_DOCKERCFG = ".dockercfg"
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


def auth_files(environ: Mapping[str, str], uid: int | None = None) -> list[Path]:
    """The files consulted, in order (module docstring)."""
    if environ.get("REGISTRY_AUTH_FILE"):
        return [Path(environ["REGISTRY_AUTH_FILE"])]
    uid = os.getuid() if uid is None else uid
    home = Path(environ["HOME"]) if environ.get("HOME") else None
    files: list[Path] = []
    if uid == 0 and environ.get("INVOCATION_ID"):
        files.append(SYSTEM_AUTH_FILE)
    if environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    else:
        files.append(Path(f"/run/containers/{uid}/auth.json"))
    if environ.get("XDG_CONFIG_HOME"):
        files.append(Path(environ["XDG_CONFIG_HOME"]) / "containers" / "auth.json")
    elif home is not None:
        files.append(home / ".config" / "containers" / "auth.json")
    if environ.get("DOCKER_CONFIG"):
        files.append(Path(environ["DOCKER_CONFIG"]) / "config.json")
    elif home is not None:
        files.append(home / ".docker" / "config.json")
    if home is not None:
        files.append(home / LEGACY_DOCKERCFG)
    if uid == 0 and SYSTEM_AUTH_FILE not in files:
        files.append(SYSTEM_AUTH_FILE)
    return files


def find_login(
    key: str,
    environ: Mapping[str, str] | None = None,
    *,
    runner: HelperRunner = run_helper,
    uid: int | None = None,
) -> RegistryLogin | None:
    """The login for `key`: HOST[:PORT], or HOST[:PORT]/REPOSITORY to let a login for that
    repository or one of its namespaces win over the host's; from the first file that has
    one, else None. `uid` (default: ours) picks the per-user and root files."""
    environ = os.environ if environ is None else environ
    for path in auth_files(environ, uid):
        if path == SYSTEM_AUTH_FILE:
            _refuse_if_shared(path)
        config = _load(path)
        if config is None:
            continue
        if path.name == LEGACY_DOCKERCFG:
            config = {"auths": config}
        login = _login_in(config, key, str(path), runner, host_only=path.name == LEGACY_DOCKERCFG)
        if login is not None:
            log.debug("registry login for %s from %s", key, login.source)
            return login
    return None


def _refuse_if_shared(path: Path) -> None:
    """The system-wide file holds root's logins: like podman, refuse it when others may
    read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigurationError(f"cannot read registry auth file {path}: {e.strerror}") from e
    if mode & 0o044:
        raise ConfigurationError(
            f"refusing registry auth file {path}: readable by group or others",
            hint=f"chmod 600 {path}",
        )


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
    config: dict[str, Any], key: str, path: str, runner: HelperRunner, *, host_only: bool
) -> RegistryLogin | None:
    host = key.split("/", 1)[0]
    helper = next(_host_entries(config.get("credHelpers") or {}, host), None)
    if helper is not None:
        return _from_helper(str(helper[1]), helper[0], runner)
    if config.get("credsStore"):
        login = _from_helper(str(config["credsStore"]), host, runner)
        if login is not None:
            return login
    auths = config.get("auths") or {}
    for candidate in [host] if host_only else _keys_for(key):
        if candidate in auths:
            return _from_entry(auths[candidate], path, candidate)
    for entry_key, entry in _host_entries(auths, host, urls_only=not host_only):
        login = _from_entry(entry, path, entry_key)
        if login is not None:
            return login
    return None


def _keys_for(key: str) -> list[str]:
    """`key` and each of its parents, most specific first: h/ns/repo, h/ns, h."""
    parts = key.split("/")
    return ["/".join(parts[:end]) for end in range(len(parts), 0, -1)]


def _host_entries(
    entries: Mapping[str, Any], host: str, *, urls_only: bool = False
) -> Iterator[tuple[str, Any]]:
    """Entries naming `host`, with or without a scheme ("https://h:5000/v2/"); with
    `urls_only`, a key without a scheme counts only whole ("h/ns" is a namespace's)."""
    wanted = _normal_host(host)
    for entry_key, value in entries.items():
        if "://" in entry_key:
            named = entry_key.split("://", 1)[1].split("/", 1)[0]
        elif urls_only:
            named = entry_key
        else:
            named = entry_key.split("/", 1)[0]
        if _normal_host(named) == wanted:
            yield entry_key, value


def _normal_host(host: str) -> str:
    """Docker Hub answers to several names; its logins are kept under any of them."""
    return "index.docker.io" if host in ("docker.io", "registry-1.docker.io") else host


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
            f"credential helper {program} is configured for {server} but not on PATH"
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
