"""A restore drill's last proof (DrillRestore): push one kept image into a scratch ECR
repository of the backup account, exactly as a restore would, read its manifest back by
digest, and delete the repository, whatever happened.

Reading the bytes back from the bucket (maintenance/drill.py) proves they are intact; this
proves the whole path an on-call engineer depends on: the bucket's bytes, the restore
engine, ECR's API and its registry accept them, under the same digest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from ecr_backup.catalog.catalog import Catalog, Resolved
from ecr_backup.errors import EcrBackupError
from ecr_backup.model import RestoreCheck
from ecr_backup.oci.digest import Digest
from ecr_backup.restore.plan import plan_images
from ecr_backup.restore.ports import TargetRegistry
from ecr_backup.restore.push import Restorer
from ecr_backup.restore.target import Target, parse_target

# Scratch repositories are named so, and the drill role may touch no other repository.
SCRATCH_PREFIX = "ecr-backup-drill-"


def restore_check(
    catalog: Catalog,
    repository: str,
    digest: Digest,
    *,
    registry_host: str,
    open_target: Callable[[Target], TargetRegistry],
    delete_target: Callable[[Target], None],
) -> RestoreCheck:
    """Restore repository@digest into a new scratch repository and read it back."""
    started = time.monotonic()
    target = parse_target(f"{registry_host}/{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}")
    scratch = f"{target.host}/{target.repository}"
    source = f"{repository}@{digest}"
    try:
        registry = open_target(target)  # creates the scratch repository
        try:
            plan = plan_images(
                catalog,
                repository,
                [(Resolved(repository, digest), None)],
                target,
                with_referrers=False,
            )
            Restorer(catalog.reader, registry).run(plan)
            served = registry.manifest_digest(target.repository, str(digest))
        finally:
            delete_target(target)
    except EcrBackupError as e:
        return RestoreCheck(source, scratch, False, e.one_line(), time.monotonic() - started)
    ok = served == digest
    detail = "restored and read back by digest" if ok else f"the registry answers {served}"
    return RestoreCheck(source, scratch, ok, detail, time.monotonic() - started)
