"""bench/router.py's raw pipe: aiokafka alone, the router's loop without the router's work. It runs
in a child process, as ``bench/router.py --pipe txn|plain --pipe-args ...`` (see _router_procs)."""

from __future__ import annotations

import asyncio
import signal
from typing import Literal

from _router_plan import MAX_BATCH  # bench/, first on sys.path when a bench runs as a script
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

__all__ = ["Mode", "raw_pipe"]

Mode = Literal["txn", "plain"]


async def raw_pipe(mode: Mode, bootstrap: str, source: str, target: str, group: str) -> None:
    """Forward each record of ``source`` to ``target`` as the router's loop does, minus its work."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"{group}.0" if mode == "txn" else None,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        retry_backoff_ms=20,  # as the router's (Settings.router_retry_backoff_ms)
        request_timeout_ms=15_000,
    )
    await producer.start()
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=MAX_BATCH,
        max_poll_interval_ms=600_000,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            records = [r for tp in sorted(batch) for r in batch[tp]]
            if not records:
                continue
            offsets = {
                TopicPartition(r.topic, r.partition): OffsetAndMetadata(r.offset + 1, "")
                for r in records
            }
            if mode == "txn":
                await producer.begin_transaction()
                for r in records:
                    await producer.send(target, r.value, key=r.key, headers=list(r.headers))
                await producer.send_offsets_to_transaction(offsets, group)
                await producer.commit_transaction()
            else:
                sent = [
                    await producer.send(target, r.value, key=r.key, headers=list(r.headers))
                    for r in records
                ]
                await asyncio.gather(*sent)
                await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()
