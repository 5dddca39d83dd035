"""The parties of an audited message, read from its leaves (who may read its evidence bundle)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from buskit import signed_ack

from bus.audit.access import parties
from bus.audit.events import decode_leaf, message_leaf, recipients_detail
from bus.party import Party, make_party

POLICE = "ygh.police.bureau"
BUREAU = "ygh.enforcement.bureau"
PROCURATORATE = "ygh.procuratorate"
MARKET = "ygh.regulator.market"


def _leaf(event: Any, party: Party, message_id: uuid.UUID, recipients: list[str]) -> dict[str, Any]:
    env = signed_ack(party, recipients=recipients, case_id="YGH-1", message_id=message_id)
    return decode_leaf(
        message_leaf(
            event,
            message_id=message_id,
            case_id="YGH-1",
            at=datetime.now(UTC),
            value=party.value(env),
            key=party.key_record(),
        )
    )


def test_an_accepted_message_belongs_to_its_sender_recipients_and_copies(tmp_path: Path) -> None:
    police = make_party(POLICE, tmp_path)
    mid = uuid.uuid4()
    delivered = decode_leaf(
        message_leaf(
            "delivered",
            message_id=mid,
            case_id="YGH-1",
            at=datetime.now(UTC),
            details=recipients_detail([BUREAU, PROCURATORATE]),
        )
    )
    found = parties([_leaf("accepted", police, mid, [BUREAU]), delivered])
    assert found == {POLICE, BUREAU, PROCURATORATE}


def test_a_forged_copy_under_an_accepted_id_adds_no_party(tmp_path: Path) -> None:
    police = make_party(POLICE, tmp_path)
    market = make_party(MARKET, tmp_path)
    mid = uuid.uuid4()
    forged = _leaf("rejected", market, mid, [MARKET])
    assert parties([_leaf("accepted", police, mid, [BUREAU]), forged]) == {POLICE, BUREAU}


def test_a_rejected_message_belongs_to_its_sender_alone(tmp_path: Path) -> None:
    market = make_party(MARKET, tmp_path)
    assert parties([_leaf("rejected", market, uuid.uuid4(), [BUREAU])]) == {MARKET}
    assert parties([]) == frozenset()
    assert parties([{"event": "query", "message_id": str(uuid.uuid4())}]) == frozenset()
