"""Replacing the router's transactional producer without leaving the old one alive."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import AIOKafkaProducer

__all__ = ["discard_producer"]

log = structlog.get_logger("casebus.router")


async def discard_producer(producer: AIOKafkaProducer, *, timeout_s: float) -> None:
    """Close a producer that is being replaced, and make sure nothing of it lives on.

    aiokafka's ``stop()`` first waits for every pending batch to be flushed; with the broker
    away that never happens, and a ``wait_for`` that gives up cancels ``stop()`` there, before
    it cancels the sender task: the old producer keeps running, and when the broker comes back
    it sends its batches and its transaction's requests (AddOffsetsToTxn, TxnOffsetCommit,
    EndTxn) under the transactional id the new producer has just taken over. The epoch bump
    fences most of that, but a transaction's outcome must not depend on which of the two
    reaches the coordinator first. So after a stop that did not finish, the sender task
    is cancelled and the connections closed here."""
    try:
        await asyncio.wait_for(producer.stop(), timeout_s)
        return
    except Exception as e:  # TimeoutError, or whatever the half-dead producer raises
        log.warning("router.producer_discarded", error=repr(e), stop_timeout_s=timeout_s)
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, timeout_s)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.client.close(), timeout_s)
