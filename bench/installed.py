"""The command line as people install it, for benchmarks that measure its CPU.

The development venv also holds the test tools and their dependencies, and some change
how botocore works when they are importable: moto brings awscrt, with which botocore signs
requests and computes checksums through the CRT, and pyOpenSSL, which botocore imports at
start-up. `pip install ecr-backup` brings neither. So the CPU benchmarks run the engine
(and boto3's baseline upload) with an interpreter that sees only ecr-backup's runtime
dependencies: a venv whose site-packages links to exactly those distributions of the
development venv (same versions, no download), found from their metadata.

The package's bytecode is compiled first, as `pip install` does: with
PYTHONDONTWRITEBYTECODE set (as on some CI machines) every start would compile the
library again, and no install does that.
"""

from __future__ import annotations

import compileall
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.common import REPO_ROOT

DISTRIBUTION = "ecr-backup"


def runtime_closure(name: str = DISTRIBUTION) -> list[metadata.Distribution]:
    """`name` and every distribution it requires, extras left out, as installed here."""
    found: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        requirement = todo.pop()
        if "extra ==" in requirement:
            continue
        project = re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]
        key = re.sub(r"[-_.]+", "-", project).lower()
        if key in found:
            continue
        distribution = metadata.distribution(project)
        found[key] = distribution
        todo += distribution.requires or []
    return list(found.values())


def installed_python(directory: Path) -> str:
    """The interpreter of a venv at `directory` that imports only the runtime closure; made
    on the first call, reused after."""
    python = directory / "bin" / "python"
    if python.exists():
        return str(python)
    compileall.compile_dir(REPO_ROOT / "shared" / "ecr_backup", quiet=1)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for distribution in runtime_closure():
        base = Path(str(distribution.locate_file("")))
        tops = {
            f.parts[0]
            for f in distribution.files or []
            if not f.parts[0].startswith("..") and f.parts[0] != "__pycache__"
        }
        for top in sorted(tops):
            link = site / top
            if (base / top).exists() and not link.exists():
                link.symlink_to(base / top)
    # A single-file module's bytecode lives beside its link, not beside its target.
    compileall.compile_dir(site, quiet=1)
    return str(python)
