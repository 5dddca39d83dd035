"""The router's own work per message counted in instructions, not seconds.

Run: ``.venv/bin/python bench/router_instructions.py [--messages 1000] [--tree DIR]``. No broker
and no database: it runs the router's classifier and batch audit (``Classifier.classify_all`` and
``audit_batch`` on the in-memory store, batches of 500) on signed ``criminal.receipt`` messages,
the ~1 KB messages of ``bench/router.py``. Needs valgrind (Debian's ``valgrind`` package); about
half a minute.

Why: on two shared cores the CPU time of one commit varies from run to run by more than most
single changes to the router are worth, so ``bench/router.py`` needs many back-to-back pairs to
show a change of 5 %. Instruction counts repeat: two runs of one commit here differed by 0.01 %.
They are not time (an instruction of the Ed25519 code and one of the interpreter do not cost the
same), so compare the rows of two commits, never the ratio to ``bench/router.py``'s time floor.

How: the bench starts itself (``--child``) under ``valgrind --tool=callgrind
--instr-atstart=no``. The child signs N + 500 messages, routes 500 of them to warm every cache,
then says so on its stdout; the bench switches counting on (``callgrind_control -i on``), lets the
child route the other N, and switches it off when the child says it is done. The table splits the
count by library: the signatures' (``cryptography``'s Rust module with its OpenSSL, and the
system libcrypto behind ``hashlib``) and the rest (the interpreter, fastavro, pydantic, orjson).
Under valgrind OpenSSL takes its portable code path, so the signatures' row is larger than a
native run's would be; it is there to show the rest is measured on the same work. ``--tree DIR``
runs the child on another checkout's ``bus`` (``PYTHONPATH=DIR``; this file and its helpers stay
this checkout's), for a before/after pair.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
WARM_UP = 500
BATCH = 500
_CRYPTO_OBJECTS = ("_rust.abi3.so", "libcrypto.so")


def _child(n: int) -> None:
    """Route WARM_UP messages, then N between the parent's 'go' and our 'done'."""
    import asyncio
    import gc
    from datetime import UTC, datetime

    import _common
    import _router_plan
    from aiokafka.structs import ConsumerRecord

    from bus.agencies import load_registry
    from bus.codec import default_codec
    from bus.party import Party
    from bus.router.batch import audit_batch
    from bus.router.classify import Classifier
    from bus.router.outputs import Outputs
    from bus.router.store import InMemoryRouterStore
    from bus.routing import load_policy
    from bus.settings import load_settings
    from bus.signing import InMemoryKeyStore, load_signer, write_keypair

    async def main() -> None:
        gc.set_threshold(20_000, 20, 20)  # as the router runs (bus.router.app)
        tmp = Path(tempfile.mkdtemp(prefix="casebus-bench-instr-"))
        try:
            plan = _router_plan.Plan(messages=n, load_s=0, message="receipt")
            bus_key = write_keypair("casebus", tmp / "bus-key")
            settings = _common.scratch_settings(
                kafka_bootstrap="unused:9092",
                database_url="postgresql://unused/unused",
                topic_prefix="instr",
                topic_partitions=6,
                topic_replication=1,
                agencies_file=load_settings().agencies_file,
                bus_key_file=bus_key.private_key,
                audit_log_key_file=None,
                crypto_profile="ed25519",
            )
            sender, _ = _router_plan.sender_and_recipient(plan)
            sender_key = write_keypair(sender, tmp / "keys" / sender)
            party = Party(sender, load_signer(sender_key.private_key, agency_id=sender))
            messages = _router_plan.signed_messages(plan, party, n + WARM_UP, seed=1)
            registry = load_registry(settings.agencies_file)
            codec = default_codec()
            classifier = Classifier(
                codec=codec,
                keystore=InMemoryKeyStore([party.key_record()]),
                registry=registry,
                policy=load_policy(settings.routing_policy_file, registry),
            )
            outputs = Outputs(
                settings,
                signer=load_signer(bus_key.private_key, agency_id="casebus"),
                codec=codec,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        now = datetime(2026, 12, 5, 12, 0, 0, 123_000, tzinfo=UTC)
        base = int(now.timestamp() * 1000)
        records = [
            _router_plan.submitted_record(
                m, topic=settings.topic_submit(), partition=i % 6, offset=i, timestamp_ms=base + i
            )
            for i, m in enumerate(messages)
        ]

        async def route(part: list[ConsumerRecord[bytes, bytes]]) -> int:
            store = InMemoryRouterStore()
            delivered = 0
            for i in range(0, len(part), BATCH):
                verdicts = await classifier.classify_all(part[i : i + BATCH], now=now)
                delivered += len((await audit_batch(store, verdicts, outputs=outputs)).accepted)
            return delivered

        await route(records[:WARM_UP])
        gc.collect()
        gc.freeze()
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("the bench did not say go")
        accepted = await route(records[WARM_UP:])
        print(f"done {accepted}", flush=True)
        sys.stdin.readline()

    asyncio.run(main())


def _count(callgrind_out: Path) -> tuple[int, int]:
    """(all instructions, those in the signatures' libraries) of one callgrind file."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(callgrind_out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    total, by_object = 0, Counter[str]()
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in m.group(2):
            total = ir
            continue
        obj = re.search(r"\[([^\]]*)\]\s*$", m.group(2))
        name = obj.group(1).rsplit("/", 1)[-1] if obj else "?"
        by_object[name] += ir
    crypto = sum(ir for name, ir in by_object.items() if name.startswith(_CRYPTO_OBJECTS))
    if not total:
        raise SystemExit(f"no instruction total in {callgrind_out}")
    return total, crypto


def _measure(n: int, tree: Path) -> tuple[int, int]:
    """Run the child under callgrind from ``tree``; (instructions, signatures' share)."""
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install valgrind)")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "bench")]),
        "PYTHONHASHSEED": "0",
    }
    with tempfile.TemporaryDirectory(prefix="casebus-bench-instr-") as tmp:
        out = Path(tmp) / "callgrind.out"
        child = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(Path(__file__).resolve()),  # this file; bus/ comes from the tree
                "--child",
                "--messages",
                str(n),
            ],
            cwd=tree,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("the child ended before routing (see its output above)")
            subprocess.run(
                ["callgrind_control", "-i", "on", str(child.pid)], check=True, capture_output=True
            )
            child.stdin.write("go\n")
            child.stdin.flush()
            done = child.stdout.readline().split()
            subprocess.run(
                ["callgrind_control", "-i", "off", str(child.pid)], check=True, capture_output=True
            )
            if done != ["done", str(n)]:
                raise SystemExit(f"the child routed {done!r}, not {n} accepted messages")
            child.stdin.write("end\n")
            child.stdin.flush()
            if child.wait(timeout=600) != 0:
                raise SystemExit(f"the child exited with {child.returncode}")
        finally:
            if child.poll() is None:
                child.kill()
        return _count(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="N counted (default 1,000)")
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the checkout to measure")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.messages)
        return
    tree = args.tree.resolve()
    total, crypto = _measure(args.messages, tree)
    n = args.messages
    print(f"{n:,} criminal.receipt messages, classify + audit on the in-memory store, {tree}")
    print()
    print("| instructions per message | count |")
    print("|:--|--:|")
    print(f"| all | {total // n:,} |")
    print(f"| the signatures' libraries (cryptography, libcrypto) | {crypto // n:,} |")
    rest = (total - crypto) // n
    print(f"| **the rest** (interpreter, fastavro, pydantic, orjson) | **{rest:,}** |")


if __name__ == "__main__":
    main()
