"""`ecr-backup coverage` against moto: per source registry, from the run summaries the
reconcile records and the index, or from ECR now (--live)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from ecr_backup.cli import main
from ecr_backup.coverage.reconcile import MissingImage as DriftMissing
from ecr_backup.coverage.reconcile import RepositoryDrift, Source
from ecr_backup.model import Action, ImageEvent
from ecr_backup.oci.digest import Digest
from ecr_backup.registry.ecr_listing import EcrImage
from ecr_backup.status.runs import MISSING_KEPT, record_reconcile
from ecr_backup.storage.blobstore import S3BlobStore
from ecr_backup.storage.index import DynamoIndex, Location
from ecr_backup.storage.runs import RunLog
from ecr_backup.storage.sources import SourceLog
from tests.helpers import BUCKET, TABLE, Backup

PREFIX = "backup/"
OWN = Source("123456789012", "us-east-1")  # moto's account
OTHER = Source("222222222222", "eu-west-1")
SEEN_ONLY = Source("333333333333", "us-east-1")
NOW = datetime.now(UTC)


@pytest.fixture
def backup(store: S3BlobStore, index: DynamoIndex, monkeypatch: pytest.MonkeyPatch) -> Backup:
    for name in ("ECR_BACKUP_BUCKET", "ECR_BACKUP_TABLE", "ECR_BACKUP_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    index.claim_location(Location(BUCKET, PREFIX))
    return Backup(store, index)


def image(repository: str, pushed_at: datetime, seed: str) -> EcrImage:
    return EcrImage(repository, Digest.of(seed.encode()), ("v1",), pushed_at, None)


def reconciled(
    source: Source, repository: str, missing: list[EcrImage], *, held: int, archived: int = 0
) -> None:
    """A reconcile of one repository, recorded as handlers/reconcile.py records it."""
    drift = RepositoryDrift(repository, images=held + len(missing) + archived)
    for found in missing:
        message = ImageEvent(repository, found.digest, Action.PUSH, found.pushed_at, "v1")
        drift.missing.append(DriftMissing(found, (message,), message))
    drift.archived_missing = [image(repository, NOW, f"archived{n}") for n in range(archived)]
    log = RunLog(TABLE, client=boto3.client("dynamodb"))
    record_reconcile(log, drift, source, NOW - timedelta(minutes=10), 1440)


def coverage(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(
        ["coverage", "--json", "--bucket", BUCKET, "--table", TABLE, "--prefix", PREFIX, *args]
    )
    out, err = capsys.readouterr()
    assert err == ""
    document: dict[str, Any] = json.loads(out)
    return code, document


def test_each_registry_is_counted_and_an_image_missing_past_the_grace_exits_1(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    late = image("team/api", NOW - timedelta(hours=3), "late")
    fresh = image("team/web", NOW - timedelta(minutes=20), "fresh")
    reconciled(OWN, "team/api", [late], held=4, archived=1)
    reconciled(OWN, "team/web", [fresh], held=2)
    reconciled(OTHER, "shop/cart", [], held=7)
    SourceLog(TABLE, client=boto3.client("dynamodb")).note(SEEN_ONLY.account, SEEN_ONLY.region, NOW)

    code, document = coverage(capsys)

    assert (code, document["covered"]) == (1, False)
    rows = {(r["account"], r["region"]): r for r in document["registries"]}
    assert list(rows) == [
        (OWN.account, OWN.region),
        (OTHER.account, OTHER.region),
        (SEEN_ONLY.account, SEEN_ONLY.region),
    ]
    own = rows[(OWN.account, OWN.region)]
    assert (own["repositories"], own["images"], own["backed_up"], own["missing"]) == (2, 9, 6, 2)
    assert own["archived_not_backed_up"] == 1
    assert own["missing_past_grace"] == 1
    assert own["oldest_missing_pushed_at"] == late.pushed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [(m["digest"], m["past_grace"]) for m in own["missing_images"]] == [
        (str(late.digest), True),
        (str(fresh.digest), False),
    ]
    other = rows[(OTHER.account, OTHER.region)]
    assert (other["images"], other["backed_up"], other["missing"]) == (7, 7, 0)
    assert other["oldest_missing_pushed_at"] is None and other["last_reconcile"] is not None
    never = rows[(SEEN_ONLY.account, SEEN_ONLY.region)]
    assert (never["repositories"], never["last_reconcile"]) == (0, None)
    total = document["total"]
    assert (total["images"], total["backed_up"], total["missing"]) == (16, 13, 2)
    assert document["grace_seconds"] == 3600

    # A longer grace: nothing is late; one account only: the others are left out.
    code, document = coverage(capsys, "--grace", "4h", "--source-account", OTHER.account)
    assert (code, document["covered"]) == (0, True)
    assert [(r["account"], r["region"]) for r in document["registries"]] == [
        (OTHER.account, OTHER.region)
    ]


def test_an_image_backed_up_since_the_reconcile_counts_as_backed_up(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    built = backup.image("team/api")
    pushed = NOW - timedelta(hours=5)
    reconciled(OWN, "team/api", [EcrImage("team/api", built.digest, ("v2",), pushed, None)], held=1)
    assert coverage(capsys)[0] == 1
    backup.push("team/api", built, "v2", pushed)  # the replicate queue caught up
    code, document = coverage(capsys)
    (row,) = document["registries"]
    assert (code, row["backed_up"], row["missing"], row["missing_images"]) == (0, 2, 0, [])


def test_a_summary_keeps_the_oldest_missing_images(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    # Recorded newest first: the summary must keep the oldest, whose wait is longest.
    images = [
        image("team/api", NOW - timedelta(minutes=n), str(n)) for n in range(MISSING_KEPT + 5)
    ]
    reconciled(OWN, "team/api", images, held=0)
    _, document = coverage(capsys)
    (row,) = document["registries"]
    assert row["missing"] == MISSING_KEPT + 5
    assert row["missing_not_listed"] == 5
    oldest = NOW - timedelta(minutes=MISSING_KEPT + 4)
    assert row["oldest_missing_pushed_at"] == oldest.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_live_lists_ecr_now(backup: Backup, capsys: pytest.CaptureFixture[str]) -> None:
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="team/api")
    held, missed = backup.image("team/api"), backup.image("team/api")
    backup.push("team/api", held, "v1", NOW - timedelta(hours=2))
    for built, tag in ((held, "v1"), (missed, "v2")):
        # moto computes a wrong digest for PutImage unless it is given one.
        ecr.put_image(
            repositoryName="team/api",
            imageManifest=built.raw.decode(),
            imageManifestMediaType=built.media_type,
            imageTag=tag,
            imageDigest=str(built.digest),
        )

    code, document = coverage(capsys, "--live")

    assert document["live"] is True
    (row,) = document["registries"]
    assert (row["account"], row["region"]) == (OWN.account, OWN.region)
    assert (row["repositories"], row["images"], row["backed_up"], row["missing"]) == (1, 2, 1, 1)
    assert [m["digest"] for m in row["missing_images"]] == [str(missed.digest)]
    assert code == 0  # pushed just now: inside the grace
    assert coverage(capsys, "--live", "--grace", "0s")[0] == 1


def test_a_bad_grace_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["coverage", "--grace", "soon"])
    assert exited.value.code == 2
    assert "'soon' is not a duration" in capsys.readouterr().err


def test_text_output_names_the_late_image(
    backup: Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    late = image("team/api", NOW - timedelta(hours=3), "late")
    reconciled(OWN, "team/api", [late], held=1)
    code = main(
        ["coverage", "--bucket", BUCKET, "--table", TABLE, "--prefix", PREFIX, "--no-trunc"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[0] == "NOT COVERED: 1 image(s) missing for over 1h"
    assert f"team/api@{late.digest} pushed" in out and "PAST GRACE" in out


def test_live_a_registry_that_cannot_be_listed_is_named_and_the_others_reported(
    backup: Backup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ecr_backup.cli import coverage as command
    from ecr_backup.errors import RegistryError

    listed = command._live

    def live(services: Any, source: Source, now: datetime) -> Any:
        if source.account == OTHER.account:
            raise RegistryError("ECR DescribeRepositories: AccessDenied (assume role refused)")
        return listed(services, source, now)

    monkeypatch.setattr(command, "_live", live)
    boto3.client("ecr").create_repository(repositoryName="team/api")
    code, document = coverage(
        capsys,
        "--live",
        *("--source-account", OWN.account, "--source-account", OTHER.account),
        *("--source-region", OWN.region),
    )
    assert (code, document["covered"]) == (1, False)
    rows = {(r["account"], r["region"]): r for r in document["registries"]}
    assert rows[(OWN.account, OWN.region)]["error"] is None
    assert rows[(OWN.account, OWN.region)]["repositories"] == 1
    assert "AccessDenied" in rows[(OTHER.account, OWN.region)]["error"]
