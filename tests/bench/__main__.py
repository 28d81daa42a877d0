"""``python -m tests.bench [NAME ...]``: run benchmarks and write their sections of BENCHMARKS.md.

Each ``tests/bench/bench_<name>.py`` has ``run() -> str`` returning a Markdown section.
Sections of benchmarks that were not run this time are kept as they were.
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
OUT = HERE.parents[1] / "BENCHMARKS.md"
HEADER = """# Benchmarks

Written by `nox -s bench` (`python -m tests.bench`); `nox -s bench -- NAME` reruns one
section. Measured on the machine that ran it: {machine}. Figures are from one run
unless a section says otherwise; targets come from the issues.
"""


def _sections(text: str) -> dict[str, str]:
    found = re.findall(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->", text, re.S)
    return dict(found)


def main(argv: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    chosen = argv or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        print(
            f"Error: unknown benchmark {unknown[0]!r} (have: {', '.join(available)})",
            file=sys.stderr,
        )
        return 2
    sections = _sections(OUT.read_text()) if OUT.exists() else {}
    for name in chosen:
        print(f"bench: {name} ...", flush=True)
        sections[name] = importlib.import_module(f"tests.bench.bench_{name}").run().strip() + "\n"
        print(sections[name], flush=True)
    machine = f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    body = [HEADER.format(machine=machine)]
    body += [
        f"<!-- bench:{n} -->\n{sections[n]}<!-- /bench:{n} -->\n"
        for n in available
        if n in sections
    ]
    OUT.write_text("\n".join(body))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
