"""`ecr-backup serve` refuses to expose the backup before it reads anything."""

from __future__ import annotations

import pytest

from ecr_backup.cli import main
from ecr_backup.errors import InvalidInputError
from ecr_backup.serve.server import check_exposure, is_loopback, parse_listen


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "0.0.0.0:5000"], "refusing to listen on 0.0.0.0 without --htpasswd"),
        (
            ["--listen", "10.0.0.5:5000", "--htpasswd", "/nonexistent"],
            "refusing basic auth over plain HTTP on 10.0.0.5",
        ),
        (["--listen", "localhost"], "invalid --listen 'localhost'"),
        (["--listen", "127.0.0.1:99999"], "invalid --listen"),
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (["--htpasswd", "/nonexistent/htpasswd"], "cannot read --htpasswd /nonexistent"),
    ],
)
def test_serve_refuses_unsafe_or_bad_options(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        (":5000", ("127.0.0.1", 5000)),
        ("[::1]:5000", ("::1", 5000)),
        ("0.0.0.0:443", ("0.0.0.0", 443)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


def test_loopback_is_the_only_place_without_users_and_tls() -> None:
    for host in ("127.0.0.1", "127.0.0.9", "::1", "localhost"):
        assert is_loopback(host)
        check_exposure(host, users=False, tls=False)
    for host in ("0.0.0.0", "::", "192.168.1.1", "registry.example.com"):
        assert not is_loopback(host)
        with pytest.raises(InvalidInputError):
            check_exposure(host, users=False, tls=True)
        with pytest.raises(InvalidInputError):
            check_exposure(host, users=True, tls=False)
        check_exposure(host, users=True, tls=True)
