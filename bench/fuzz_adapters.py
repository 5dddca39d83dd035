"""The hostile corpus at full size: N cases against each of the five adapters, counting 5xx.

Run: ``.venv/bin/python bench/fuzz_adapters.py --cases 10000 [--seed 15] [--adapters court,police]``
with ``CASEBUS_DATABASE_URL`` pointing at a PostgreSQL where the role may create databases
(``source .casebus/env``). It makes a scratch database, migrates it, registers the agencies,
serves each adapter in this process (the real app and PostgreSQL; no relay, no inbox reader, so
no Kafka) and sends it :func:`adapters.fuzzing.corpus`: NaN/Infinity, integers past 4,300 digits,
UTC offsets at the range ends, every unprintable Unicode category, over-long strings, odd
structures and broken bodies. It prints a table adapter × cases × answers and exits 1 if any
answer was 5xx or a 4xx came without a problem list naming field and rule. The CI test
(``tests/test_adapter_api_fuzz.py``) runs the same corpus, smaller.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from _common import admin_sql, markdown_table, say, scratch_settings, with_db

import adapters.fuzzing
from bus.agencies import load_registry
from bus.agency_db import sync_agencies
from bus.db import migrate
from bus.logs import configure_logging
from bus.settings import load_settings


async def main(cases: int, seed: int, kinds: list[str]) -> int:
    configure_logging(log_format="console", level="error")
    base = load_settings()
    name = f"casebus_bench_fuzz_{uuid.uuid4().hex[:8]}"
    await admin_sql(base.database_url, f'CREATE DATABASE "{name}"')
    dsn = with_db(base.database_url, name)
    settings = scratch_settings(database_url=dsn)
    rows: list[list[str]] = []
    failed = False
    keys_dir = tempfile.TemporaryDirectory(prefix="casebus-fuzz-keys-")
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await sync_agencies(conn, load_registry(settings.agencies_file))
        finally:
            await conn.close()
        keys = Path(keys_dir.name)
        for kind in kinds:
            say("fuzz", f"{kind}: {cases} cases")
            started = time.perf_counter()
            result = await adapters.fuzzing.run_corpus(
                kind, settings, key_dir=keys, cases=cases, seed=seed
            )
            elapsed = time.perf_counter() - started
            by_class = result.statuses
            rows.append(
                [
                    kind,
                    str(result.cases),
                    str(by_class.get(202, 0)),
                    str(sum(n for s, n in by_class.items() if 400 <= s < 500)),
                    str(result.five_xx),
                    str(len(result.unnamed)),
                    " ".join(f"{s}:{n}" for s, n in sorted(by_class.items())),
                    f"{elapsed:.0f}",
                ]
            )
            for line in result.server_errors + result.unnamed[:5]:
                say("fuzz", f"{kind}: {line}")
            failed |= result.five_xx > 0 or bool(result.unnamed)
    finally:
        keys_dir.cleanup()
        await admin_sql(base.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"`.venv/bin/python bench/fuzz_adapters.py --cases {cases} --seed {seed}` — "
        f"classes: {', '.join(adapters.fuzzing.CLASSES)}\n"
    )
    head = ["adapter", "cases", "202", "4xx", "5xx", "4xx unnamed", "statuses", "seconds"]
    print("\n".join(markdown_table(head, rows)))
    return 1 if failed else 0


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases per adapter")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--adapters", default=",".join(sorted(adapters.fuzzing.ADAPTERS)), help="comma-separated"
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = _args()
    kinds = [k for k in args.adapters.split(",") if k]
    unknown = sorted(set(kinds) - set(adapters.fuzzing.ADAPTERS))
    if unknown:
        raise SystemExit(f"unknown adapters: {unknown}")
    sys.exit(asyncio.run(main(args.cases, args.seed, kinds)))
