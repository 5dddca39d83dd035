"""The retention policy and the pure decision of when a case file may go: no database, every
rule (the shipped file, a kind's period, the default, an unknown kind, an upload's grace)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.attachments import (
    DEFAULT_RETENTION_PATH,
    MessageRef,
    RetentionPolicy,
    load_retention,
    retention_verdict,
)
from bus.errors import ConfigError
from bus.models import KINDS
from bus.settings import load_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetentionPolicy.model_validate(
    {
        "version": 1,
        "default": {"days": 100},
        "unreferenced_upload_grace": {"days": 30},
        "kinds": {"criminal.transfer": {"days": 3650}, "clue.handover": {"days": 365}},
    }
)


def ref(kind: str | None, days_after_t0: float, message_id: str = "") -> MessageRef:
    return MessageRef(
        message_id or f"m-{kind}-{days_after_t0}", kind, T0 + timedelta(days_after_t0)
    )


def test_the_shipped_policy_loads_and_is_what_the_settings_name() -> None:
    policy = load_retention()
    assert load_settings().attachment_retention_file == DEFAULT_RETENTION_PATH
    assert policy.unreferenced_upload_grace.days == 30
    # Criminal-transfer files are kept far longer than a regulator's clue handover.
    assert policy.retention_of("criminal.transfer")[1] > 2 * policy.retention_of("clue.handover")[1]
    assert set(policy.kinds) <= set(KINDS)


def test_an_upload_no_message_refers_to_goes_when_its_grace_ends_and_not_before() -> None:
    v = retention_verdict(POLICY, [], last_uploaded_at=T0)
    assert (v.rule, v.retention_days, v.message, v.references) == ("upload_grace", 30, None, 0)
    assert v.expires_at == T0 + timedelta(days=30)
    assert not v.expired(T0 + timedelta(days=30) - timedelta(seconds=1))
    assert v.expired(T0 + timedelta(days=30))
    assert "30-day grace of an upload no message referred to" in v.describe()


def test_one_young_message_keeps_a_file_however_many_old_ones_refer_to_it() -> None:
    refs = [
        ref("clue.handover", 0),
        ref(None, -9000),
        ref("bus.ack", 1),
        ref("criminal.transfer", 5),
    ]
    v = retention_verdict(POLICY, refs, last_uploaded_at=T0)
    assert (v.rule, v.retention_days) == ("kind_retention", 3650)
    assert v.message == refs[3] and v.references == 4
    assert v.expires_at == T0 + timedelta(days=5 + 3650)
    assert v.newest_message_at == T0 + timedelta(days=5)
    assert not v.expired(T0 + timedelta(days=3654))
    assert "3650-day retention of criminal.transfer" in v.describe()


def test_a_kind_without_an_entry_gets_the_default_and_an_unknown_kind_the_longest() -> None:
    v = retention_verdict(POLICY, [ref("opinion.request", 0)], last_uploaded_at=T0)
    assert (v.rule, v.retention_days) == ("default_retention", 100)
    unknown = retention_verdict(POLICY, [ref(None, 0)], last_uploaded_at=T0)
    assert (unknown.rule, unknown.retention_days) == ("unknown_kind_retention", 3650)


def test_a_later_upload_keeps_a_file_whose_messages_expired_for_its_grace() -> None:
    # The bytes were uploaded again for a new message: old messages' expiry must not take them.
    later = T0 + timedelta(days=500)
    v = retention_verdict(POLICY, [ref("clue.handover", 0)], last_uploaded_at=later)
    assert (v.rule, v.expires_at, v.references) == ("upload_grace", later + timedelta(days=30), 1)
    assert "grace of its last upload" in v.describe()


def test_on_a_tie_the_message_is_named_rather_than_the_upload() -> None:
    v = retention_verdict(POLICY, [ref("opinion.request", -70)], last_uploaded_at=T0)
    assert v.expires_at == T0 + timedelta(days=30) and v.rule == "default_retention"


def test_references_of_one_message_by_several_agencies_count_once() -> None:
    same = [ref("clue.handover", 0, "m1"), ref("clue.handover", 0, "m1")]
    assert retention_verdict(POLICY, same, last_uploaded_at=T0).references == 1


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("version: 1\ndefault: {days: 10}\n", "unreferenced_upload_grace"),
        (
            "version: 1\ndefault: {days: 0}\nunreferenced_upload_grace: {days: 30}\n",
            "default.days (value 0)",
        ),
        (
            "version: 1\ndefault: {days: 10}\nunreferenced_upload_grace: {days: 30}\n"
            "kinds: {criminal.trasnfer: {days: 10}}\n",
            "criminal.trasnfer: not a message kind",
        ),
        (
            "version: 1\ndefault: {days: 10}\nunreferenced_upload_grace: {days: 30}\n"
            "kinds: {clue.handover: {days: 10, yaers: 3}}\n",
            "kinds.clue.handover.yaers",
        ),
        ("version: 2\ndefault: {days: 10}\nunreferenced_upload_grace: {days: 3}\n", "version"),
        ("version: [1\n", "cannot read"),
    ],
)
def test_a_bad_policy_file_is_refused_naming_the_field_and_value(
    tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "retention.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_retention(path)
    assert str(path) in str(caught.value) and named in str(caught.value)
