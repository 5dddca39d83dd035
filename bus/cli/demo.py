"""``casebus demo``: the main job, end to end on the local broker and database."""

from __future__ import annotations

import asyncio
import time
import uuid

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bus.settings import Settings, load_settings

app = typer.Typer(help="Run the demo scenario end to end.", invoke_without_command=True)


async def _one_message(settings: Settings) -> None:
    sender, recipient = "ygh.regulator.planning", "ygh.enforcement.bureau"
    message_id = str(uuid.uuid4())
    topic = settings.topic_submit()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"casebus.demo.{message_id}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    await producer.start()
    try:
        # Pin the start positions before sending, so that "latest" is before our message.
        await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():
            await consumer.position(tp)
        t0 = time.perf_counter()
        meta = await producer.send_and_wait(
            topic,
            b"clue.handover demo",
            key=b"YGH-2026-0001",
            headers=[("ce_id", message_id.encode()), ("ce_source", sender.encode())],
        )
        typer.echo(f"sent     {message_id} {sender} -> {topic}[{meta.partition}]@{meta.offset}")
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    if dict(r.headers).get("ce_id") == message_id.encode():
                        ms = (time.perf_counter() - t0) * 1000
                        typer.echo(
                            f"received {message_id} for {recipient} from "
                            f"{r.topic}[{r.partition}]@{r.offset} in {ms:.1f} ms"
                        )
                        return
    finally:
        await producer.stop()
        await consumer.stop()


@app.callback()
def demo() -> None:
    """Send one message through the local broker and receive it (foundation stage)."""
    settings = load_settings()
    asyncio.run(asyncio.wait_for(_one_message(settings), timeout=60))
