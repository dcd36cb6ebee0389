from __future__ import annotations

import json

import pytest

from ecr_backup.backup.events import parse_event
from ecr_backup.errors import InvalidInputError
from ecr_backup.model import Action
from ecr_backup.settings import Settings

DIGEST = "sha256:" + "ab" * 32


def ecr_event(**detail: object) -> dict[str, object]:
    return {
        "version": "0",
        "id": "event-1",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": "111122223333",
        "time": "2026-05-01T10:00:00Z",
        "region": "eu-central-1",
        "resources": [],
        "detail": {
            "result": "SUCCESS",
            "repository-name": "team/app",
            "image-digest": DIGEST,
            "action-type": "PUSH",
            "image-tag": "v1",
            **detail,
        },
    }


def test_settings_from_environment_with_flags_winning() -> None:
    env = {
        "ECR_BACKUP_BUCKET": "env-bucket",
        "ECR_BACKUP_TABLE": "index",
        "ECR_BACKUP_PREFIX": "a/b",
    }
    settings = Settings.load(env, bucket="flag-bucket", prefix=None)
    assert (settings.bucket, settings.table, settings.prefix) == ("flag-bucket", "index", "a/b/")
    assert settings.concurrency == 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ECR_BACKUP_TABLE": "t-1"}, "ECR_BACKUP_BUCKET"),
        ({"ECR_BACKUP_BUCKET": "Bad_Bucket", "ECR_BACKUP_TABLE": "t-1"}, "S3 bucket name"),
        (
            {"ECR_BACKUP_BUCKET": "b-1", "ECR_BACKUP_TABLE": "t-1", "ECR_BACKUP_CONCURRENCY": "0"},
            "ECR_BACKUP_CONCURRENCY",
        ),
        (
            {
                "ECR_BACKUP_BUCKET": "b-1",
                "ECR_BACKUP_TABLE": "t-1",
                "ECR_BACKUP_SOURCE_REGISTRY": "x",
            },
            "URL",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Settings.load(env)


def test_push_event_becomes_an_image_event() -> None:
    image = parse_event(json.dumps(ecr_event())).image_event()
    assert image is not None
    assert image.action is Action.PUSH
    assert (image.repository, image.tag, str(image.digest)) == ("team/app", "v1", DIGEST)
    assert (image.source_account, image.source_region) == ("111122223333", "eu-central-1")
    assert image.time.isoformat() == "2026-05-01T10:00:00+00:00"


@pytest.mark.parametrize("detail", [{"result": "FAILURE"}, {"action-type": "REPLICATE"}])
def test_failed_or_other_actions_are_not_acted_on(detail: dict[str, object]) -> None:
    assert parse_event(ecr_event(**detail)).image_event() is None
    other = {**ecr_event(), "source": "aws.s3"}
    assert parse_event(other).image_event() is None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("{", "not valid JSON"),
        (json.dumps({"id": "x"}), "invalid EventBridge event"),
        (json.dumps(ecr_event(**{"image-digest": "sha1:00"})), "only sha256"),
        (json.dumps(ecr_event(**{"repository-name": "Team"})), "invalid repository name"),
    ],
)
def test_malformed_events_are_refused(event: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_event(event).image_event()


def test_event_time_without_timezone_is_refused_before_any_work() -> None:
    naive = {**ecr_event(), "time": "2026-05-01T10:00:00"}
    with pytest.raises(InvalidInputError, match="time"):
        parse_event(naive)
