"""Registry logins found where docker, podman and skopeo keep them; explicit flags win;
ECR hosts keep the ECR token; TLS options from flags and the standard variables."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import urllib3

from ecr_backup.errors import ConfigurationError, InvalidInputError
from ecr_backup.oci.reference import validate_oci_repository
from ecr_backup.registry.auth import BasicCredentials, ChallengeCredentials, TokenCredentials
from ecr_backup.registry.credentials import RegistryLogin, auth_files, find_login
from ecr_backup.registry.tls import TlsOptions
from ecr_backup.restore.target import parse_target, target_credentials

HOST = "registry.example.com:5000"


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def write(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def test_search_order_is_podmans(tmp_path: Path) -> None:
    """containers-auth.json(5) and containers/image's getAuthFilePaths: REGISTRY_AUTH_FILE
    alone when set; else the runtime file, the config file, docker's, docker's legacy one,
    and for root the system file."""
    home = tmp_path / "home"
    env = {
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "HOME": str(home),
    }
    assert auth_files(env, uid=1000) == [
        tmp_path / "run" / "containers" / "auth.json",
        tmp_path / "config" / "containers" / "auth.json",
        tmp_path / "docker" / "config.json",
        home / ".dockercfg",
    ]
    explicit = {**env, "REGISTRY_AUTH_FILE": str(tmp_path / "explicit.json")}
    assert auth_files(explicit, uid=1000) == [tmp_path / "explicit.json"]
    assert auth_files({"HOME": str(home)}, uid=0) == [
        Path("/run/containers/0/auth.json"),  # podman's default for root
        home / ".config" / "containers" / "auth.json",
        home / ".docker" / "config.json",
        home / ".dockercfg",
        Path("/etc/containers/auth.json"),
    ]
    under_systemd = auth_files({"HOME": str(home), "INVOCATION_ID": "x"}, uid=0)
    assert under_systemd[0] == Path("/etc/containers/auth.json")

    write(home / ".dockercfg", {f"https://{HOST}/v1/": auth("legacy", "l")})
    only_home = {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "none")}
    login = find_login(HOST, only_home)
    assert login is not None and login.username == "legacy"
    write(tmp_path / "docker" / "config.json", {"auths": {HOST: auth("docker", "d")}})
    assert find_login(HOST, env) == RegistryLogin(
        "docker", "d", str(tmp_path / "docker/config.json")
    )
    write(tmp_path / "config" / "containers" / "auth.json", {"auths": {HOST: auth("cfg", "c")}})
    login = find_login(HOST, env)
    assert login is not None and login.username == "cfg"
    write(tmp_path / "run" / "containers" / "auth.json", {"auths": {HOST: auth("podman", "p")}})
    login = find_login(HOST, env)
    assert login is not None and login.username == "podman"
    write(tmp_path / "explicit.json", {"auths": {f"https://{HOST}/v2/": auth("first", "pw-1")}})
    login = find_login(HOST, explicit)
    assert login is not None and (login.username, login.password) == ("first", "pw-1")
    assert find_login("other.example.com", explicit) is None
    assert find_login("other.example.com", env) is None
    assert "pw-1" not in repr(login)  # the password never reaches a log line


def test_the_system_file_is_refused_when_others_may_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = write(tmp_path / "etc-auth.json", {"auths": {HOST: auth("root", "r")}})
    monkeypatch.setattr("ecr_backup.registry.credentials.SYSTEM_AUTH_FILE", system)
    env = {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    assert auth_files(env, uid=0)[-1] == system
    system.chmod(0o600)
    login = find_login(HOST, env, uid=0)
    assert login is not None and login.username == "root"
    assert find_login(HOST, env, uid=1000) is None  # only root reads the system file
    system.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by group or others"):
        find_login(HOST, env, uid=0)


def test_the_most_specific_key_wins(tmp_path: Path) -> None:
    env = {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    auths = {
        HOST: auth("host", "h"),
        f"{HOST}/team": auth("team", "t"),
        f"{HOST}/team/app": auth("app", "a"),
        f"{HOST}/other": auth("other", "o"),
    }
    write(tmp_path / "auth.json", {"auths": auths})

    def user(key: str) -> str | None:
        login = find_login(key, env)
        return login.username if login else None

    assert user(f"{HOST}/team/app") == "app"
    assert user(f"{HOST}/team/web") == "team"
    assert user(f"{HOST}/team/app/sub") == "app"
    assert user(f"{HOST}/teams/app") == "host"  # a namespace matches whole, not by prefix
    assert user(f"{HOST}/lib/x") == "host"
    assert user(HOST) == "host"
    del auths[HOST]
    write(tmp_path / "auth.json", {"auths": auths})
    assert user(f"{HOST}/lib/x") is None  # a namespace's login is not the host's
    assert user("docker.io/library/alpine") is None
    write(tmp_path / "auth.json", {"auths": {"https://index.docker.io/v1/": auth("hub", "x")}})
    assert user("docker.io/library/alpine") == "hub"


def test_username_and_password_fields_and_broken_files(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path)}
    write(tmp_path / "config.json", {"auths": {HOST: {"username": "u", "password": "p"}}})
    login = find_login(HOST, env)
    assert login is not None and (login.username, login.password) == ("u", "p")
    write(tmp_path / "config.json", {"auths": {HOST: {"auth": "not base64!"}}})
    with pytest.raises(ConfigurationError, match="not base64"):
        find_login(HOST, env)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        find_login(HOST, env)


def helper_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / f"docker-credential-{name}"
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return program


def test_cred_helpers_win_over_creds_store_and_auths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "seen"
    helper_on_path(
        tmp_path,
        monkeypatch,
        "per-host",
        f'read s; echo "$1 $s" >> {seen}; echo \'{{"Username":"h","Secret":"s1"}}\'',
    )
    helper_on_path(
        tmp_path,
        monkeypatch,
        "store",
        "read s; echo 'credentials not found in native keychain'; exit 1",
    )
    env = {"DOCKER_CONFIG": str(tmp_path)}
    config = {
        "auths": {HOST: auth("file", "f"), "b.example.com": auth("file", "b")},
        "credHelpers": {HOST: "per-host"},
        "credsStore": "store",
    }
    write(tmp_path / "config.json", config)
    login = find_login(HOST, env)
    assert login is not None and (login.username, login.password) == ("h", "s1")
    assert seen.read_text() == f"get {HOST}\n"  # docker's protocol: `get`, server on stdin
    # The store knows nothing of b.example.com: the auths entry answers.
    login = find_login("b.example.com", env)
    assert login is not None and login.password == "b"


def test_a_failing_or_missing_helper_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path)}
    write(tmp_path / "config.json", {"credHelpers": {HOST: "absent-helper"}})
    with pytest.raises(ConfigurationError, match=r"docker-credential-absent-helper .* not on PATH"):
        find_login(HOST, env)
    helper_on_path(tmp_path, monkeypatch, "broken", "echo 'keychain locked' >&2; exit 3")
    write(tmp_path / "config.json", {"credHelpers": {HOST: "broken"}})
    with pytest.raises(ConfigurationError, match=r"exit 3.*keychain locked"):
        find_login(HOST, env)


def test_identity_tokens_from_files_and_helpers_reach_the_bearer_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path)}
    # What `docker login` keeps for an identity token: a placeholder user beside it.
    entry = {**auth("00000000-0000-0000-0000-000000000000", ""), "identitytoken": "refresh-1"}
    write(tmp_path / "config.json", {"auths": {HOST: entry}})
    login = find_login(HOST, env)
    assert login is not None and login.identity_token == "refresh-1"
    assert "refresh-1" not in repr(login)
    helper_on_path(
        tmp_path, monkeypatch, "acr", 'read s; echo \'{"Username":"<token>","Secret":"refresh-2"}\''
    )
    write(tmp_path / "config.json", {"credHelpers": {HOST: "acr"}})
    login = find_login(HOST, env)
    assert login is not None and login.identity_token == "refresh-2"

    target = parse_target(f"{HOST}/team/app")
    creds = target_credentials(target, login_finder=lambda host: login)
    assert isinstance(creds, ChallengeCredentials) and creds._identity_token == "refresh-2"
    with pytest.raises(InvalidInputError, match="--to-username or a login"):
        target_credentials(target, auth="basic", login_finder=lambda host: login)


class Session:
    """Only what target_credentials touches when the host names the ECR registry."""

    def client(self, service: str, region_name: str | None = None) -> object:
        return object()


def test_explicit_flags_win_and_ecr_hosts_keep_the_ecr_token() -> None:
    found = RegistryLogin("file-user", "file-pass", "config.json")
    other = parse_target(f"{HOST}/team/app")
    ecr = parse_target("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app")
    asked: list[str] = []

    def finder(host: str) -> RegistryLogin:
        asked.append(host)
        return found

    creds = target_credentials(other, login_finder=finder)
    assert isinstance(creds, ChallengeCredentials) and creds._username == "file-user"
    key = f"{HOST}/team/app"  # the repository's login, or its namespace's, wins over the host's
    assert asked == [key]
    creds = target_credentials(other, username="flag-user", password="x", login_finder=finder)
    assert isinstance(creds, ChallengeCredentials) and creds._username == "flag-user"
    assert asked == [key]  # explicit flags: the files are not even read
    assert isinstance(
        target_credentials(other, auth="basic", login_finder=finder), BasicCredentials
    )
    assert asked == [key, key]
    creds = target_credentials(ecr, session=Session(), login_finder=finder)  # type: ignore[arg-type]
    assert isinstance(creds, TokenCredentials) and asked == [key, key]
    with pytest.raises(InvalidInputError, match="--to-username or a login"):
        target_credentials(other, auth="basic", login_finder=lambda host: None)


def test_repository_names_follow_ecr_rules_only_for_ecr_targets() -> None:
    assert parse_target(f"{HOST}/a__b/c--d").repository == "a__b/c--d"
    assert parse_target(f"{HOST}/x").repository == "x"  # ECR wants at least 2 characters
    with pytest.raises(InvalidInputError, match="2-256 lowercase"):
        parse_target("123456789012.dkr.ecr.eu-west-1.amazonaws.com/a__b")
    with pytest.raises(InvalidInputError, match="2-256 lowercase"):
        parse_target("123456789012.dkr.ecr.eu-west-1.amazonaws.com/x")
    for bad in ("Upper", "a/", "-a", "a..b", "a___b"):
        with pytest.raises(InvalidInputError):
            validate_oci_repository(bad)


def test_tls_options_from_flags_then_the_standard_variables(tmp_path: Path) -> None:
    bundle, other = tmp_path / "ca.pem", tmp_path / "other.pem"
    bundle.write_text("x")
    other.write_text("y")
    env = {"SSL_CERT_FILE": str(bundle), "AWS_CA_BUNDLE": str(other)}
    assert TlsOptions.from_environment(env).ca_bundle == str(bundle)
    assert TlsOptions.from_environment({"AWS_CA_BUNDLE": str(other)}).ca_bundle == str(other)
    assert TlsOptions.from_environment(env, ca_bundle=str(other)).ca_bundle == str(other)
    with pytest.raises(ConfigurationError, match="not a readable file"):
        TlsOptions.from_environment({}, ca_bundle=str(tmp_path / "missing.pem"))
    pool = TlsOptions(insecure=True).pool_manager()
    assert pool.connection_pool_kw["cert_reqs"] == "CERT_NONE"
    pool = TlsOptions(ca_bundle=str(bundle)).pool_manager()
    assert pool.connection_pool_kw["ca_certs"] == str(bundle)
    assert isinstance(pool, urllib3.PoolManager)


def test_run_helper_speaks_the_docker_protocol(tmp_path: Path) -> None:
    from ecr_backup.registry.credentials import run_helper

    program = tmp_path / "docker-credential-echo"
    program.write_text('#!/bin/sh\nread s; printf \'{"Username":"%s","Secret":"%s"}\' "$1" "$s"\n')
    program.chmod(0o755)
    answer = run_helper(str(program), HOST)
    assert isinstance(answer, subprocess.CompletedProcess)
    assert json.loads(answer.stdout) == {"Username": "get", "Secret": HOST}


def test_a_non_ecr_source_reads_the_same_files_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecr_backup.composition import AwsServices
    from ecr_backup.registry.scoped import PerRepository
    from ecr_backup.settings import Settings

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    write(tmp_path / "config.json", {"auths": {HOST: auth("puller", "pw")}})
    settings = Settings(
        bucket="backup-bucket", source_registry=f"https://{HOST}", source_auth="config"
    )
    services = AwsServices(settings, Session())  # type: ignore[arg-type]
    source = services.source("123456789012", "eu-west-1")
    assert isinstance(source, PerRepository)
    assert services.source("123456789012", "eu-west-1") is source  # tokens kept per process
    # One client, and one bearer token scope, per repository it reads.
    for repository in ("team/app", "team/web"):
        credentials = source.client(repository)._credentials
        assert isinstance(credentials, ChallengeCredentials)
        assert (credentials._username, credentials._password) == ("puller", "pw")
        assert credentials._scopes == [f"repository:{repository}:pull"]
    assert source.client("team/app") is source.client("team/app")
    write(tmp_path / "config.json", {"auths": {HOST: {"identitytoken": "refresh-3"}}})
    with_token = AwsServices(settings, Session())  # type: ignore[arg-type]
    token_source = with_token.source("123456789012", "eu-west-1")
    assert isinstance(token_source, PerRepository)
    credentials = token_source.client("team/app")._credentials
    assert isinstance(credentials, ChallengeCredentials)
    assert credentials._identity_token == "refresh-3"
    ecr = AwsServices(Settings(bucket="backup-bucket"), Session())  # type: ignore[arg-type]
    assert ecr.source("123456789012", "eu-west-1") is ecr.registry("123456789012", "eu-west-1")
