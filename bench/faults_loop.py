"""The fault tests, many times over on the real broker: do they ever lose or double a message?

One command: ``.venv/bin/python bench/faults_loop.py --runs 50`` (with ``make infra`` done, or
a private ``CASEBUS_STATE_DIR``/ports: the broker-restart tests stop and start the broker that
``deploy/local`` manages). Runs each test ``--runs`` times in one pytest session (module
fixtures such as the 3-broker cluster start once) and prints a table: test, runs, passed, raw
duplicates seen, messages lost, and the failures that were neither. The counts come from each
failed run's own assertion ("N deliveries seen twice, M messages lost"), read on a raw
read_committed consumer; a passed run saw none.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from _common import markdown_table, say

from bus.settings import REPO_ROOT

DEFAULT_TESTS = [
    "tests/test_router_faults.py::test_broker_restart_under_load_loses_nothing",
    "tests/test_router_faults.py::test_two_routers_share_the_partitions_and_survive_one_killed",
    "tests/test_router_eos.py::test_a_frozen_replica_that_comes_back_delivers_nothing_twice",
    "tests/test_router_eos.py::test_a_commit_whose_answer_was_lost_is_not_routed_again",
    "tests/test_cluster.py::test_two_routers_split_the_partitions_and_survive_one_killed",
    "tests/test_router_hanging.py::test_a_hanging_transaction_of_its_own_is_settled_with_its_own_outcome",
    "tests/test_router_hanging.py::test_a_router_rewinding_onto_its_own_hanging_offsets_settles_them",
    "tests/test_router_hanging.py::test_a_hanging_transaction_of_unknown_outcome_waits_for_the_operator",
]
_COUNTS = re.compile(r"(\d+) deliveries seen twice, (\d+) messages lost")


def _name(case: ET.Element) -> str:
    name = re.sub(r"run\d+-?|-?run\d+", "", case.get("name", "")).replace("[]", "")
    return f"{case.get('classname', '').rsplit('.', 1)[-1]}::{name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="times each test runs")
    parser.add_argument(
        "--stop-on-failure",
        action="store_true",
        help="stop at the first failed run, leaving the broker, its logs and the test's "
        "tmp_path as the failure left them (to read why, not to count)",
    )
    parser.add_argument("-k", dest="keyword", help="pytest -k: only the runs it selects")
    parser.add_argument("tests", nargs="*", default=DEFAULT_TESTS, help="pytest node ids")
    args = parser.parse_args()
    report = Path(tempfile.mkdtemp(prefix="faults-loop-")) / "junit.xml"
    started = time.monotonic()
    say("faults_loop", f"{len(args.tests)} tests × {args.runs} runs; logs under {report.parent}")
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        *args.tests,
        f"--repeat-each={args.runs}",
        "-q",
        "-p",
        "no:cacheprovider",
        "--timeout=600",
        f"--junitxml={report}",
        # Its own base folder: pytest keeps only the last three under /tmp/pytest-of-<user>, and
        # any other pytest session on the machine would rotate a failed run's logs away.
        f"--basetemp={report.parent / 'tmp'}",
        *(["-x"] if args.stop_on_failure else []),
        *(["-k", args.keyword] if args.keyword else []),
    ]
    subprocess.run(cmd, cwd=REPO_ROOT, stdout=sys.stderr, check=False)
    runs: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # runs passed dup lost other
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(report).getroot().iter("testcase"):
        row = runs[_name(case)]
        seconds[_name(case)] += float(case.get("time", "0"))
        row[0] += 1
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is None:
            row[1] += 1 if case.find("skipped") is None else 0
            continue
        found = _COUNTS.search(failure.get("message", "") + (failure.text or ""))
        if found:
            row[2] += int(found.group(1))
            row[3] += int(found.group(2))
        else:
            row[4] += 1
    head = ["test", "runs", "passed", "raw duplicates", "lost", "other failures", "s/run"]
    rows = [
        [name, *(str(n) for n in r), f"{seconds[name] / max(r[0], 1):.1f}"]
        for name, r in sorted(runs.items())
    ]
    print(f"faults_loop: {args.runs} runs each, {time.monotonic() - started:.0f} s in all")
    print("\n".join(markdown_table(head, rows)))
    bad = sum(r[0] - r[1] for r in runs.values())
    return 1 if bad or not runs else 0


if __name__ == "__main__":
    raise SystemExit(main())
