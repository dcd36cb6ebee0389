"""The restore-side CLI under moto: output shapes, errors on one line, exit codes."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ecr_backup.cli import main
from ecr_backup.oci.digest import Digest
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import BUCKET, TABLE, Backup, drop_table, minutes


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch) -> Backup:
    monkeypatch.setenv("ECR_BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ECR_BACKUP_TABLE", TABLE)
    monkeypatch.setenv("ECR_BACKUP_PREFIX", "backup/")
    made = Backup(store, index)
    first, second = made.image("team/app"), made.image("team/app")
    made.push("team/app", first, "v1", minutes(1))
    made.push("team/app", second, "v1", minutes(2))
    made.push("team/app", made.multi_arch("team/app"), "multi", minutes(3))
    return made


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_queries_in_json_and_text(backup: Backup, capsys: pytest.CaptureFixture[str]) -> None:
    assert as_json(capsys, "repos") == [{"repository": "team/app"}]
    tags = as_json(capsys, "tags", "team/app")
    assert [t["tag"] for t in tags] == ["multi", "v1"] and tags[1]["state"] == "current"
    history = as_json(capsys, "history", "team/app:v1")
    assert [h["time"] for h in history] == [
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:02:00Z",
    ]
    at = as_json(capsys, "show", "team/app:v1", "--at", "2026-01-01T00:01:30Z")
    assert at["digest"] == history[0]["digest"] and at["pushed_at"] == history[0]["time"]
    code, out, _ = cli(capsys, "tags", "team/app")
    assert code == 0
    assert out.splitlines()[0].split() == ["TAG", "DIGEST", "SINCE", "STATE", "SIZE"]
    code, out, _ = cli(capsys, "show", "team/app:multi")
    assert "platforms linux/amd64, linux/arm64" in out and "MANIFEST" in out and "BLOB" in out


def test_errors_are_one_line_with_a_non_zero_exit(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    # Missing data exits 5, bad input 2 (see the README's exit codes).
    code, out, err = cli(capsys, "show", "team/app:v1", "--at", "2025-12-31T00:00:00Z")
    assert code == 5 and out == ""
    assert err == "ecr-backup: error: no backup of team/app:v1 at 2025-12-31T00:00:00Z\n"
    code, _, err = cli(capsys, "show", "team/app:v1", "--at", "yesterday")
    assert code == 2 and err.count("\n") == 1 and "invalid time 'yesterday'" in err
    code, _, err = cli(capsys, "restore", "team/app:v1", "--to", "host/Bad")
    assert code == 2 and "invalid repository name 'Bad'" in err


def test_lookups_work_without_the_table(
    backup: Backup, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    expected = as_json(capsys, "tags", "team/app")
    drop_table()
    assert as_json(capsys, "tags", "team/app") == expected
    # main() logs to stderr; under pytest the root logger is caplog's.
    assert "answering from the bucket's push records" in caplog.text


def test_no_table_configured_means_the_bucket(
    backup: Backup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = as_json(capsys, "history", "team/app:v1")
    monkeypatch.delenv("ECR_BACKUP_TABLE")
    assert as_json(capsys, "history", "team/app:v1") == expected
    code, _, err = cli(capsys, "rebuild-index")
    assert code == 2 and "name the index table" in err


def test_verify_export_and_rebuild(
    backup: Backup, capsys: pytest.CaptureFixture[str], tmp_path: Path, s3: Any
) -> None:
    report = as_json(capsys, "verify", "--deep")
    assert report["ok"] is True and report["problems"] == []
    archive = tmp_path / "app.tar"
    exported = as_json(capsys, "export", "team/app:v1", "--docker-archive", str(archive))
    assert exported["format"] == "docker-archive" and archive.stat().st_size > 0
    code, _, err = cli(capsys, "export", "team/app:multi", "--docker-archive", str(archive))
    assert code == 2 and "choose one with --platform" in err
    drop_table()
    rebuilt = as_json(capsys, "rebuild-index")
    assert rebuilt["created_table"] is True and rebuilt["records"] == 3
    # Tamper with a layer: verify now fails with a non-zero exit and names it.
    blob = as_json(capsys, "show", "team/app:v1")["blobs"][-1]
    backup.tamper(s3, Digest.parse(blob["digest"]), bytes(blob["size"]))
    code, out, _ = cli(capsys, "verify", "team/app:v1", "--deep")
    assert code == 1 and f"hash: {blob['digest']}" in out


@pytest.mark.parametrize(
    ("reference", "repo_tags"),
    [
        (None, ["team/app:v1"]),
        ("mirror.example.com:5000/app:restored", ["mirror.example.com:5000/app:restored"]),
        ("team/app", ["team/app:latest"]),  # a name alone is tagged latest, as skopeo does
    ],
)  # fmt: skip
def test_a_docker_archive_names_the_image_by_the_docker_reference_given(
    backup: Backup,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    reference: str | None,
    repo_tags: list[str],
) -> None:
    archive = tmp_path / "app.tar"
    destination = f"{archive}:{reference}" if reference else str(archive)
    as_json(capsys, "export", "team/app:v1", "--docker-archive", destination)
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        (entry,) = json.load(member)
    assert entry["RepoTags"] == repo_tags


@pytest.mark.parametrize(
    "reference",
    ["Team/App:v1", "team/app@sha256:" + "a" * 64, "team//app:v1", "team/app:-v1", "a" * 256],
)
def test_a_docker_archive_refuses_what_is_not_a_docker_reference(
    backup: Backup, capsys: pytest.CaptureFixture[str], tmp_path: Path, reference: str
) -> None:
    archive = tmp_path / "app.tar"
    code, out, err = cli(
        capsys, "export", "team/app:v1", "--docker-archive", f"{archive}:{reference}"
    )
    assert (code, out) == (2, "") and "invalid docker reference" in err
    assert len(err.splitlines()) == 1 and not archive.exists()


def test_binary_output_to_a_terminal_is_refused(
    backup: Backup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    for flag in ("--oci-archive", "--docker-archive"):
        code, out, err = cli(capsys, "export", "team/app:v1", flag, "-")
        assert code != 0 and out == "" and "refusing to write" in err


def test_tables_show_short_digests_and_times_to_the_second(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = as_json(capsys, "tags", "team/app")
    _, out, _ = cli(capsys, "tags", "team/app")
    digest = rows[1]["digest"]
    assert f" {digest.removeprefix('sha256:')[:12]} " in out and digest not in out
    assert "2026-01-01T00:02:00Z" in out and max(map(len, out.splitlines())) <= 100
    _, out, _ = cli(capsys, "tags", "team/app", "--no-trunc")
    assert digest in out


def test_restore_all_repositories_goes_on_past_a_failure_and_says_which(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    made = backup.image("team/web")
    backup.push("team/web", made, "v1", minutes(5))
    # Nothing listens on port 1: every repository fails, each with its own line.
    code, out, err = cli(capsys, "restore", "--all-repositories", "--to-registry", "127.0.0.1:1")
    assert code == 4 and err == ""
    assert "failed team/app: log in to http://127.0.0.1:1: cannot reach" in out
    assert "failed team/web" in out and "0 of 2 repositories restored" in out
    # Before anything was pushed: nothing to restore, which is not a failure.
    document = as_json(
        capsys, "restore", "--all-repositories", "--to-registry", "127.0.0.1:1",
        "--at", "2025-12-31T00:00:00Z", "--repository-prefix", "team/a",
    )  # fmt: skip
    assert document["failed"] == 0 and document["repositories"] == [
        {
            "repository": "team/app",
            "target": "127.0.0.1:1/team/app",
            "action": "skipped",
            "tags": [],
            "tags_moved": [],
            "tag_counts": {"created": 0, "unchanged": 0, "moved": 0},
            "bytes_uploaded": 0,
            "error": "no live tags at that time",
        }
    ]
    code, _, err = cli(capsys, "restore", "--all-repositories", "team/app")
    assert code != 0 and "takes no IMAGE" in err
    code, _, err = cli(capsys, "restore", "team/app:v1")
    assert code != 0 and "needs REPOSITORY[:TAG|@DIGEST] and --to" in err


def test_an_archive_on_stdout_puts_its_json_report_on_stderr(
    backup: Backup, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    code = main(["export", "team/app:v1", "--oci-archive", "-", "--json"])
    out, err = capsysbinary.readouterr()
    assert code == 0
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        assert "index.json" in archive.getnames()
    report = json.loads(err)
    assert report["format"] == "oci-archive" and report["path"] == "-" and report["blobs"] >= 1
