"""The maintenance pass: keep every object of every kept image locked (maintenance.locks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ecr_backup.catalog.surges import SurgeBook
from ecr_backup.errors import BlobNotFoundError, ConfigurationError, EcrBackupError
from ecr_backup.maintenance.graph import ObjectGraph
from ecr_backup.maintenance.locks import LockCheck, LockKeeper
from ecr_backup.maintenance.ports import ObjectLedger
from ecr_backup.maintenance.retention import HistorySource, RetentionRules, judge
from ecr_backup.oci.digest import Digest


@dataclass
class MaintainReport:
    time: datetime
    images_kept: int = 0
    objects_checked: int = 0
    extended: list[LockCheck] = field(default_factory=list)
    short: list[LockCheck] = field(default_factory=list)
    missing: list[Digest] = field(default_factory=list)
    failed: dict[Digest, str] = field(default_factory=dict)  # digest -> why it was not checked

    @property
    def ok(self) -> bool:
        """False when a lock had come closer than half a period to lapsing, an object a kept
        image needs is gone from the bucket (both break the invariant), or a lock could not
        be checked (the invariant is not known to hold)."""
        return not self.short and not self.missing and not self.failed


def maintain(
    ledger: ObjectLedger,
    index: HistorySource,
    graph: ObjectGraph,
    rules: RetentionRules,
    keeper: LockKeeper,
    *,
    surges: SurgeBook,
) -> MaintainReport:
    """Extend the locks of the closure of every kept image whose lock ends too soon."""
    report = MaintainReport(keeper.clock())
    objects = ledger.objects()
    verdicts = judge(index, ledger.holds(), rules, report.time, surges=surges)
    kept = [v.digest for v in verdicts if v.kept]
    report.images_kept = len(kept)
    # Foreign layers are in the closure but not in the bucket: only held objects count.
    for digest in sorted(graph.reach(kept, referrers=True) & objects.keys(), key=str):
        report.objects_checked += 1
        try:
            check = keeper.for_check(digest, objects[digest].lock_until)
        except BlobNotFoundError:
            report.missing.append(digest)
            continue
        except ConfigurationError:
            raise  # the role or the settings: every other object would fail alike
        except EcrBackupError as e:
            # S3 or the index would not answer for this one object (throttled past the
            # retries, say): the objects after it are still checked and extended.
            report.failed[digest] = e.one_line()
            continue
        if check.extended:
            report.extended.append(check)
        if check.short:
            report.short.append(check)
    return report
