"""Who is a party to an audited message or case, from the log itself: who may read about it.

An evidence bundle carries the whole signed envelope (names, ID numbers), so the HTTP proof
service hands it only to the message's parties and to the procuratorate. The parties are read
from the audit log, not from anything the caller says: the sender and recipients of the envelope
the router *accepted* (its signature verified) and every agency the bus delivered it to. A
message the router never accepted has one party, the sender its envelope names; the agencies it
names as recipients never received it. A second, rejected envelope reusing an accepted message's
id adds no one, so nobody makes themselves a party by naming themselves in a forged copy.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from bus.audit.events import decode_leaf, leaf_envelope
from bus.codec import Codec, default_codec
from bus.db import Executor

__all__ = ["case_parties", "message_parties", "parties"]


def _envelope_parties(leaf: Mapping[str, Any], codec: Codec) -> tuple[str, list[str]] | None:
    value = leaf_envelope(leaf)
    if value is None:
        return None
    try:
        env = codec.decode_envelope(value)
    except Exception:  # a rejected record may not even decode: it names no one
        return None
    return env.sender, list(env.recipients)


def parties(leaves: Iterable[Mapping[str, Any]], *, codec: Codec | None = None) -> frozenset[str]:
    """The agencies party to the message the decoded ``leaves`` (all about one id) record."""
    codec = codec or default_codec()
    by_event = {str(leaf.get("event")): leaf for leaf in leaves}
    accepted = by_event.get("accepted")
    if accepted is None:
        for event in ("rejected", "dead_lettered"):
            found = by_event.get(event)
            named = _envelope_parties(found, codec) if found is not None else None
            if named is not None:
                return frozenset([named[0]])
        return frozenset()
    out: set[str] = set()
    named = _envelope_parties(accepted, codec)
    if named is not None:
        out.add(named[0])
        out.update(named[1])
    delivered = by_event.get("delivered")
    if delivered is not None:
        details = delivered.get("details") or {}
        out.update(str(a) for a in details.get("deliver_to") or ())
    return frozenset(out)


async def message_parties(db: Executor, message_id: uuid.UUID) -> frozenset[str]:
    """The parties of ``message_id`` per the audit log; empty when it holds no such message."""
    rows = await db.fetch(
        "SELECT leaf FROM audit_entries WHERE message_id = $1 ORDER BY idx", message_id
    )
    return parties(decode_leaf(bytes(r["leaf"])) for r in rows)


async def case_parties(db: Executor, case_id: str) -> frozenset[str]:
    """Every agency party to a message of ``case_id``; empty when the log holds no such case."""
    rows = await db.fetch(
        "SELECT message_id, leaf FROM audit_entries WHERE case_id = $1 ORDER BY idx", case_id
    )
    by_message: defaultdict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_message[r["message_id"]].append(decode_leaf(bytes(r["leaf"])))
    out: set[str] = set()
    for leaves in by_message.values():
        out |= parties(leaves)
    return frozenset(out)
