"""How long the ``casebus`` command line takes to start: light commands next to bare Python.

Run: ``.venv/bin/python bench/cli_startup.py [--runs 10]`` (a few seconds; no broker or
database). Each row runs one command ``--runs`` times, one after the other, and reports the
least CPU (user + system, from the child's own rusage) any run took: on a shared machine a run
can only be slowed down by other work, never sped up, so the minimum is the figure that says
what the command costs. The rows are

- ``python -c pass``: the interpreter alone;
- ``python -c "import typer"``: the command-line library every ``casebus`` command loads;
- ``casebus --help`` and ``casebus sla due court.acceptance --start …`` (both are meant to
  answer under 0.3 s);
- ``casebus sla due`` again with a ``CASEBUS_*`` setting in the environment (as after
  ``source .casebus/env``): the settings are then read and checked with pydantic-settings.

The ratio columns divide each row by the two baselines measured in the same run, so a slower or
faster machine can still compare its numbers with these. The commands run with no ``CASEBUS_*``
variables set (except in the row that sets one) and with stdout and stderr discarded.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import markdown_table, say  # bench/, first on sys.path when a bench runs

__all__ = ["main"]

BIN = Path(sys.executable).parent
DUE = ["sla", "due", "court.acceptance", "--start", "2026-09-29T10:00:00+08:00"]
TARGET_S = 0.3


def _rows() -> list[tuple[str, list[str], dict[str, str]]]:
    casebus = str(BIN / "casebus")
    return [
        ("python -c pass", [sys.executable, "-c", "pass"], {}),
        ('python -c "import typer"', [sys.executable, "-c", "import typer"], {}),
        ("casebus --help", [casebus, "--help"], {}),
        ("casebus sla due …", [casebus, *DUE], {}),
        (
            "casebus sla due … (CASEBUS_TOPIC_PREFIX set)",
            [casebus, *DUE],
            {"CASEBUS_TOPIC_PREFIX": "casebus"},
        ),
    ]


def _cpu_once(argv: list[str], env: dict[str, str]) -> float:
    """Run ``argv`` to its end; the user + system CPU seconds it used."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 1),
                (os.POSIX_SPAWN_DUP2, null, 2),
            ],
        )
    finally:
        os.close(null)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed (status {status}); run it by hand to see why")
    return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (10)")
    runs = parser.parse_args(argv).runs
    base_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CASEBUS_")}
    rows = _rows()
    best = {name: float("inf") for name, _, _ in rows}
    for i in range(runs):
        say("cli_startup", f"round {i + 1} of {runs}")
        for name, cmd, extra in rows:  # interleaved: a burst of load hits every row alike
            best[name] = min(best[name], _cpu_once(cmd, {**base_env, **extra}))
    bare, typer_only = best[rows[0][0]], best[rows[1][0]]
    table = [
        [
            name,
            f"{best[name] * 1000:.0f}",
            f"{best[name] / bare:.1f}",
            f"{best[name] / typer_only:.2f}",
            ("yes" if best[name] < TARGET_S else "NO") if name.startswith("casebus") else "",
        ]
        for name, _, _ in rows
    ]
    print(
        f"casebus start-up, least CPU (user + system) of {runs} runs; Python "
        f"{sys.version.split()[0]}; {os.cpu_count()} CPUs"
    )
    print()
    head = ["command", "CPU ms", "× python -c pass", "× import typer", f"< {TARGET_S} s"]
    print("\n".join(markdown_table(head, table)))


if __name__ == "__main__":
    main()
