"""No tag moves silently: a restore reads every target tag first and refuses to move one
unless asked, before anything is pushed; text and --json say the same for every form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecr_backup.catalog.catalog import Catalog
from ecr_backup.cli import main
from ecr_backup.composition import AwsServices
from ecr_backup.errors import RefusedError
from ecr_backup.oci.manifest import Manifest
from ecr_backup.oci.reference import ImageRef
from ecr_backup.restore.plan import RestoreRequest, plan_restore
from ecr_backup.restore.push import Restorer
from ecr_backup.restore.target import parse_target
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex
from tests.helpers import BUCKET, TABLE, Backup, FakeTarget, minutes

HOST = "registry.example.com"


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch) -> Backup:
    monkeypatch.setenv("ECR_BACKUP_BUCKET", BUCKET)
    monkeypatch.setenv("ECR_BACKUP_TABLE", TABLE)
    monkeypatch.setenv("ECR_BACKUP_PREFIX", "backup/")
    return Backup(store, index)


def images(backup: Backup) -> tuple[Manifest, Manifest]:
    """team/api:v1 (backed up) and a newer image the live registry has under v1."""
    old, new = backup.image("team/api"), backup.image("team/api")
    backup.push("team/api", old, "v1", minutes(1))
    backup.push("team/api", backup.image("team/api"), "v2", minutes(2))
    return old, new


def live(target: FakeTarget, repository: str, tag: str, image: Manifest, backup: Backup) -> None:
    """The target holds `image` under `tag`, as a registry in use does."""
    for blob in image.blobs:
        target.blobs.setdefault(repository, {})[blob.digest] = backup.source.blobs[blob.digest]
    target.put_manifest(repository, tag, image)
    target.calls.clear()


def restorer(backup: Backup, target: FakeTarget, **options: Any) -> tuple[Any, Restorer]:
    catalog = Catalog(backup.store, backup.index)
    request = RestoreRequest(ImageRef("team/api"), all_tags=True)
    plan = plan_restore(catalog, request, parse_target(f"{HOST}/team/api"))
    return plan, Restorer(catalog.reader, target, **options)


def test_a_move_is_refused_before_anything_is_pushed(backup: Backup) -> None:
    old, new = images(backup)
    target = FakeTarget()
    live(target, "team/api", "v1", new, backup)
    plan, restore = restorer(backup, target)
    with pytest.raises(RefusedError) as refused:
        restore.run(plan)
    assert refused.value.details == (f"team/api:v1 {new.digest} -> {old.digest}",)
    assert "--allow-tag-moves" in str(refused.value) and refused.value.exit_code == 1
    assert target.calls == [] and target.tags("team/api") == {"v1": new.digest}


def test_allowed_moves_happen_and_are_reported_per_tag(backup: Backup) -> None:
    old, new = images(backup)
    target = FakeTarget()
    live(target, "team/api", "v1", new, backup)
    plan, restore = restorer(backup, target, allow_tag_moves=True)
    report = restore.run(plan)
    assert target.tags("team/api")["v1"] == old.digest
    assert [m.as_dict() for m in report.tags_moved] == [
        {"repository": "team/api", "tag": "v1", "from": str(new.digest), "to": str(old.digest)}
    ]
    assert report.tags_created == ["v2"] and report.tag_counts == {
        "created": 1,
        "unchanged": 0,
        "moved": 1,
    }
    again = restore.run(plan)
    assert again.tag_counts == {"created": 0, "unchanged": 2, "moved": 0}


def test_a_tag_moved_by_someone_else_during_the_restore_is_not_overwritten(
    backup: Backup,
) -> None:
    old, new = images(backup)
    target = FakeTarget()
    plan, restore = restorer(backup, target)
    real_put = target.put_manifest

    def someone_moves_v1(repository: str, reference: str, manifest: Manifest) -> Any:
        digest = real_put(repository, reference, manifest)
        if reference == str(old.digest):  # after the manifests, before the tags
            live(target, "team/api", "v1", new, backup)
        return digest

    target.put_manifest = someone_moves_v1  # type: ignore[method-assign]
    with pytest.raises(RefusedError, match="allow-tag-moves"):
        restore.run(plan)
    assert target.tags("team/api")["v1"] == new.digest


def test_dry_run_shows_the_moves(backup: Backup) -> None:
    old, new = images(backup)
    target = FakeTarget()
    live(target, "team/api", "v1", new, backup)
    plan, restore = restorer(backup, target)
    report = restore.preview(plan)
    assert [(m.tag, m.restored) for m in report.tags_moved] == [("v1", old.digest)]
    assert report.tags_created == ["v2"]
    assert target.calls == []


# -- the command line -----------------------------------------------------------------------


@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch) -> FakeTarget:
    fake = FakeTarget()

    def target_registry(self: AwsServices, *_: Any, **__: Any) -> tuple[FakeTarget, bool]:
        return fake, False

    monkeypatch.setattr(AwsServices, "target_registry", target_registry)
    return fake


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "form",
    [
        ("team/api:v1", "--to", f"{HOST}/team/api"),
        ("team/api", "--all-tags", "--to", f"{HOST}/team/api"),
        ("--all-repositories", "--to-registry", HOST),
    ],
    ids=["one image", "all tags", "all repositories"],
)
def test_every_form_of_restore_refuses_moves_and_says_which(
    backup: Backup, target: FakeTarget, capsys: pytest.CaptureFixture[str], form: tuple[str, ...]
) -> None:
    old, new = images(backup)
    live(target, "team/api", "v1", new, backup)
    code, out, err = cli(capsys, "restore", *form)
    lines = err.splitlines()
    assert code == 1 and out == ""
    assert lines[0] == f"team/api:v1 {new.digest} -> {old.digest}"
    assert "pass --allow-tag-moves" in lines[-1] and len(lines) == 2
    assert target.calls == []

    code, out, _ = cli(capsys, "restore", *form, "--json")
    assert code == 1
    assert json.loads(out)["tags_moved"] == [
        {"repository": "team/api", "tag": "v1", "from": str(new.digest), "to": str(old.digest)}
    ]

    code, out, err = cli(capsys, "restore", *form, "--dry-run")
    assert code == 1 and f"would move team/api:v1 {new.digest} -> {old.digest}" in out
    assert "--allow-tag-moves" in err and target.calls == []
    code, out, _ = cli(capsys, "restore", *form, "--dry-run", "--allow-tag-moves")
    assert code == 0 and "would move team/api:v1" in out

    code, out, _ = cli(capsys, "restore", *form, "--allow-tag-moves", "--json")
    assert code == 0 and target.tags("team/api")["v1"] == old.digest
    document = json.loads(out)
    report = document.get("report", document)
    assert report["tags_moved"] == [
        {"repository": "team/api", "tag": "v1", "from": str(new.digest), "to": str(old.digest)}
    ]
    created = 0 if form[0] == "team/api:v1" else 1  # v2
    assert report["tag_counts"] == {"created": created, "unchanged": 0, "moved": 1}

    # Once in place, nothing moves any more: a plain restore goes through.
    code, out, _ = cli(capsys, "restore", *form)
    assert code == 0 and "moved" in out and "0 moved" in out
