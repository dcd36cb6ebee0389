"""Silence is an error, quickly: a registry that accepts connections and never answers, or
refuses them, ends a restore in one line with exit 4 well within 30 s (issue 18). The AWS
side is tests/unit/cli/test_errors.py's."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from devkit import EcrRegistry, OciLayoutBuilder
from devkit.net import SilentListener, free_port
from ecr_backup.errors import ExitCode
from tests.integration.conftest import BackupTarget
from tests.integration.test_restore import at, push_and_back_up

pytestmark = pytest.mark.integration

SILENCE_BOUND_S = 30  # the spec's bound for a command facing silence, retries included


@pytest.fixture
def silent() -> Iterator[SilentListener]:
    with SilentListener() as listener:
        yield listener


@pytest.fixture
def backed_up(
    backup_target: BackupTarget, registry: EcrRegistry, oci_images: OciLayoutBuilder
) -> BackupTarget:
    image = oci_images.simple_image(ref="v1", n_layers=1, layer_size=50_000, seed=1801)
    push_and_back_up(backup_target, registry, oci_images, image, "quiet/app", "v1", at(1))
    return backup_target


def restore_to(target: BackupTarget, url: str) -> tuple[int, list[str], float]:
    started = time.monotonic()
    run = target.cli("restore", "quiet/app:v1", "--to", f"{url}/quiet/app", "--to-auth", "none")
    elapsed = time.monotonic() - started
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stdout == ""
    return run.returncode, run.stderr.splitlines(), elapsed


def test_a_registry_that_never_answers_fails_the_restore_in_one_line_within_30_s(
    backed_up: BackupTarget, silent: SilentListener
) -> None:
    code, lines, elapsed = restore_to(backed_up, silent.url)

    assert code == ExitCode.REMOTE
    assert len(lines) == 1, lines
    assert lines[0].startswith("ecr-backup: error: ")
    assert f"cannot reach {silent.url}: timed out" in lines[0]
    assert elapsed < SILENCE_BOUND_S
    assert silent.accepted  # it was asked, and said nothing


def test_a_closed_registry_port_fails_the_restore_in_one_line_within_30_s(
    backed_up: BackupTarget,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there

    code, lines, elapsed = restore_to(backed_up, url)

    assert code == ExitCode.REMOTE
    assert len(lines) == 1, lines
    assert f"cannot reach {url}: connection refused" in lines[0]
    assert elapsed < SILENCE_BOUND_S
