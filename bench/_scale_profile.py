"""Where a server process spends its CPU under load: py-spy samples, summarised.

py-spy (https://github.com/benfred/py-spy) attaches to the running `tamma-sync serve`
process — the real one, unchanged — and samples the stacks of threads that are running
(idle waits are left out), without slowing the Python code down the way a tracing profiler
does. It is not a dependency of the project: install it anywhere, e.g.
`pip install --target /tmp/pyspy py-spy`, and pass `--py-spy /tmp/pyspy/bin/py-spy`
(or have `py-spy` on PATH).

`summarize()` turns py-spy's collapsed stacks into three short tables: own time by
package (the leaf frame), inclusive time of the project's own functions, and the functions
with the most own time.
"""

from __future__ import annotations

import collections
import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def find_py_spy(explicit: str | None) -> str | None:
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("py-spy")


@contextlib.contextmanager
def recording(
    py_spy: str, pid: int, seconds: float, output: Path, rate: int = 250
) -> Iterator[None]:
    """Sample `pid` for `seconds` while the body runs; the collapsed stacks go to `output`."""
    process = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield
    finally:
        try:
            process.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _parse(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match["function"], match["file"]


def _package(file: str) -> str:
    if not file:
        return "(native)"
    parts = Path(file).parts
    if parts and parts[0] in ("<frozen runpy>",):
        return "runpy"
    head = parts[0] if parts else file
    return head.removesuffix(".py")


def summarize(collapsed: Path, title: str, top: int = 20) -> str:
    """A Markdown summary of py-spy's raw (collapsed) output."""
    own_by_package: collections.Counter[str] = collections.Counter()
    own_by_function: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse(frame) for frame in stack.split(";")]
        total += count
        function, file = frames[-1]
        own_by_package[_package(file)] += count
        own_by_function[f"{function} ({file})"] += count
        seen = set()
        for function, file in frames:
            if file.startswith("tamma_sync/") or "sqlalchemy/engine/result" in file:
                key = f"{function} ({file})"
                if key not in seen:
                    seen.add(key)
                    inclusive[key] += count
    if not total:
        return f"#### {title}\n\nno samples\n"

    def share(count: int) -> str:
        return f"{count / total * 100:.1f} %"

    lines = [f"#### {title}", "", f"{total:,} samples of running threads.", ""]
    lines += ["Own time by package (leaf frame):", ""]
    lines += [f"- {name}: {share(count)}" for name, count in own_by_package.most_common(12)]
    lines += ["", "Inclusive time, tamma_sync functions:", ""]
    lines += [
        f"- {name}: {share(count)}"
        for name, count in inclusive.most_common(top)
        if count / total >= 0.01
    ]
    lines += ["", "Most own time:", ""]
    lines += [f"- {name}: {share(count)}" for name, count in own_by_function.most_common(top)]
    return "\n".join(lines) + "\n"
