"""Cold import of the Lambda handler: what a cold start pays before the first record.

Each sample is a fresh interpreter, run the way Lambda loads the function (the handler's
directory, then the library, ahead of the installed packages; -I so that no PYTHON*
variable or user site changes the path), with `-X importtime`: the figure is the
cumulative time of `import replicate`, interpreter start-up excluded. The median of
`--repeat` processes is reported against the 300 ms target (issue 8); for context, the
same for `import boto3` alone, which every AWS function pays.

`python -m bench.import_bench [--repeat N]` prints the rows on their own.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import REPO_ROOT, Row, markdown_table

TARGET_MS = 300.0
DEFAULT_REPEAT = 9
_LOADER = "import sys; sys.path[:0] = [{handlers!r}, {shared!r}]; import {module}"
_LINE = re.compile(r"^import time:\s+\d+\s+\|\s+(\d+)\s+\|\s*(\S+)\s*$")


def import_ms(module: str) -> float:
    """Milliseconds `import module` took, cumulative, in a fresh interpreter."""
    code = _LOADER.format(
        handlers=str(REPO_ROOT / "handlers"), shared=str(REPO_ROOT / "shared"), module=module
    )
    run = subprocess.run(
        [sys.executable, "-I", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"import {module} failed:\n{run.stderr[-4000:]}")
    for line in reversed(run.stderr.splitlines()):
        match = _LINE.match(line)
        if match and match.group(2) == module:
            return int(match.group(1)) / 1000
    raise RuntimeError(f"no -X importtime line for {module}")


@dataclass(frozen=True)
class ImportResults:
    handler_ms: list[float]
    boto3_ms: list[float]

    @property
    def handler_median(self) -> float:
        return statistics.median(self.handler_ms)

    def rows(self) -> list[Row]:
        n = len(self.handler_ms)
        spread = f"{min(self.handler_ms):.0f}-{max(self.handler_ms):.0f} ms"
        return [
            Row(
                f"Handler cold import, `import replicate` (median of {n} processes; {spread})",
                f"{self.handler_median:.0f} ms",
                f"< {TARGET_MS:.0f} ms",
                self.handler_median < TARGET_MS,
            ),
            Row(
                f"For context: `import boto3` alone (median of {n})",
                f"{statistics.median(self.boto3_ms):.0f} ms",
            ),
        ]


def run(*, repeat: int = DEFAULT_REPEAT) -> ImportResults:
    # One process first, not counted: it fills the page cache and writes .pyc files.
    import_ms("replicate")
    handler: list[float] = []
    boto3: list[float] = []
    for _ in range(repeat):  # interleaved, so that load on the machine hits both alike
        handler.append(import_ms("replicate"))
        boto3.append(import_ms("boto3"))
    return ImportResults(handler, boto3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_bench", description=__doc__)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    args = parser.parse_args(argv)
    print(markdown_table(run(repeat=args.repeat).rows()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
