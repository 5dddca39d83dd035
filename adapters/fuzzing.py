"""Hostile department documents for every adapter, and a runner that counts the answers.

Nothing a department's system sends may make an adapter answer 5xx. Schemathesis
(``tests/test_adapter_api_fuzz.py``) generates from the OpenAPI schema, which says little about
what a field may hold; this corpus starts instead from valid documents of each adapter and puts,
at random places (envelope fields, payload fields, list items, new keys, keys themselves), values
of every class that has broken a JSON API: NaN and the infinities, integers past Python's 4,300
digits, UTC offsets at the ends of the datetime range, characters of every Unicode category that
is not printable (Cc, Cf, Cs, Co, Cn, Zl, Zp), strings longer than every column and index, odd
structures, and bodies that are not a JSON object at all.

The CI test runs a few hundred cases per adapter; ``bench/fuzz_adapters.py`` runs ten thousand.
Both drive the real adapter app and PostgreSQL (no relay, no inbox reader: no Kafka needed).
"""

from __future__ import annotations

import json
import random
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from adapters import court, enforcement, police, procuratorate, regulators
from adapters._framework.auth import create_token
from adapters._framework.config import AdapterConfig, AgencyEndpoint
from adapters._framework.service import AdapterService
from adapters.court import testing as court_docs
from adapters.enforcement import testing as bureau_docs
from adapters.police import testing as police_docs
from adapters.procuratorate.testing import supervision_notice
from adapters.regulators import testing as regulator_docs
from bus.settings import Settings
from bus.signing import algorithm_of_profile, write_keypair

__all__ = [
    "ADAPTERS",
    "CLASSES",
    "ORIGINAL",
    "FuzzCase",
    "FuzzResult",
    "corpus",
    "run_corpus",
]

BUREAU: Final = "ygh.enforcement.bureau"
PLANNING: Final = "ygh.regulator.planning"
POLICE: Final = "ygh.police.bureau"
PROCURATORATE: Final = "ygh.procuratorate"
COURT: Final = "ygh.court"
ORIGINAL: Final = "0f1e2d3c-4b5a-4697-8877-665544332211"
"""The message the seeds that answer one name (glbh): an answer without it is refused."""

UNPRINTABLE: Final = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
"""Unicode general categories with no printable character."""
CLASSES: Final = (
    "non_finite",
    "long_integer",
    "datetime_range",
    *UNPRINTABLE,
    "long_string",
    "structure",
    "body",
)
"""Every class of hostile input the corpus draws from; each case names the ones it used."""


def _seeds_court(ajbh: str) -> list[dict[str, Any]]:
    return [
        court_docs.acceptance(
            ajbh=ajbh,
            sqh="申1",
            jsdw=[BUREAU],
            accepted=True,
            fyah="(2026)云0101行审1号",
            glbh=ORIGINAL,
        ),
        court_docs.ruling(ajbh=ajbh, sqh="申1", fyah="(2026)云0101行审1号", jsdw=[BUREAU])
        | {"glbh": ORIGINAL},
    ]


def _seeds_enforcement(ajbh: str) -> list[dict[str, Any]]:
    return [
        bureau_docs.opinion_request(ajbh=ajbh, qqbh="q", jsdw=[PLANNING]),
        bureau_docs.penalty_feedback(
            ajbh=ajbh, bgbh="b", jsdw=[PLANNING], decisions=[bureau_docs.penalty_decision(ajbh, 1)]
        ),
        bureau_docs.clue_receipt(ajbh=ajbh, xsbh="X", jsdw=[PLANNING], accept=False, glbh=ORIGINAL),
    ]


def _seeds_police(ajbh: str) -> list[dict[str, Any]]:
    return [
        police_docs.receipt(ajbh=ajbh, ysshh="移1", jsdw=[BUREAU], glbh=ORIGINAL),
        police_docs.filing_decision(
            ajbh=ajbh,
            ysshh="移1",
            jsdw=[BUREAU],
            filed=False,
            jdsh="不立1",
            reasons=["无犯罪事实"],
            glbh=ORIGINAL,
        ),
        police_docs.jurisdiction_forward(
            ajbh=ajbh, ysshh="移1", jsdw=[BUREAU], gxdw="kmg.police.eco", glbh=ORIGINAL
        ),
    ]


def _seeds_procuratorate(ajbh: str) -> list[dict[str, Any]]:
    return [
        supervision_notice(
            ajbh=ajbh, ysshh="移1", jsdw=[POLICE], gajg=POLICE, tzsh="检监1", file_case=True
        )
    ]


def _seeds_regulators(ajbh: str) -> list[dict[str, Any]]:
    return [
        regulator_docs.clue_handover(ajbh=ajbh, xsbh="X", jsdw=[BUREAU]),
        regulator_docs.opinion_response(
            ajbh=ajbh, qqbh="q", dfbh="d", jsdw=[BUREAU], glbh=ORIGINAL
        ),
        regulator_docs.opinion_delegated(ajbh=ajbh, qqbh="q", jsdw=[BUREAU], glbh=ORIGINAL),
    ]


@dataclass(frozen=True)
class _Adapter:
    agency: str
    build_service: Callable[..., AdapterService]
    seeds: Callable[[str], list[dict[str, Any]]]


ADAPTERS: Final[dict[str, _Adapter]] = {
    "court": _Adapter(COURT, court.build_service, _seeds_court),
    "enforcement": _Adapter(BUREAU, enforcement.build_service, _seeds_enforcement),
    "police": _Adapter(POLICE, police.build_service, _seeds_police),
    "procuratorate": _Adapter(PROCURATORATE, procuratorate.build_service, _seeds_procuratorate),
    "regulators": _Adapter(PLANNING, regulators.build_service, _seeds_regulators),
}
"""The five adapters: the agency each is fuzzed as, and its valid documents."""


# -- hostile values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Raw:
    """JSON text written as is: NaN, Infinity, integers Python would refuse to print."""

    text: str


def _by_category() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {c: [] for c in UNPRINTABLE}
    for code in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code))
        if category in out:
            out[category].append(chr(code))
    return out


_CHARACTERS: Final = _by_category()
_DATETIMES: Final = (
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00+00:01",
    "0001-01-01T00:00:00-23:59",
    "0001-01-01T00:00:00Z",
    "0001-01-01",
    "9999-12-31T23:59:59-12:00",
    "9999-12-31T23:59:59.999-00:01",
    "9999-12-31T23:59:59+23:59",
    "9999-12-31T23:59:59.999Z",
    "9999-12-31",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "2026-03-02T09:00:00",
    "2026-02-30T00:00:00+08:00",
    "2026-03-02T09:00:00+24:00",
)


_RANGES: Final = (
    (0x4E00, 0x9FFF),  # CJK, 3 bytes in UTF-8
    (0x20000, 0x2A6DF),  # CJK Extension B, 4 bytes
    (0x21, 0x7E),  # ASCII
)


def _text(rng: random.Random, length: int) -> str:
    low, high = rng.choice(_RANGES)
    return "".join(chr(rng.randint(low, high)) for _ in range(length))


def _hostile(rng: random.Random, kind: str, near: Any) -> Any:
    """A value of class ``kind``; ``near`` is the value it replaces (text may be kept around)."""
    if kind == "non_finite":
        return _Raw(rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1E400", "NaN"]))
    if kind == "long_integer":
        digits = rng.choice([4300, 4301, 5000, 20_000])
        return _Raw(rng.choice(["", "-"]) + "1" + "0" * (digits - 1))
    if kind == "datetime_range":
        return rng.choice(_DATETIMES)
    if kind in UNPRINTABLE:
        chars = "".join(rng.choice(_CHARACTERS[kind]) for _ in range(rng.randint(1, 3)))
        base = near if isinstance(near, str) and near else "阳城执〔2026〕1号"
        where = rng.choice(["only", "start", "middle", "end"])
        if where == "only":
            return chars
        if where == "start":
            return chars + base
        if where == "end":
            return base + chars
        cut = rng.randint(0, len(base))
        return base[:cut] + chars + base[cut:]
    if kind == "long_string":
        return _text(rng, rng.choice([257, 1000, 2705, 3000, 10_000, 100_000, 300_000]))
    if kind == "structure":
        return rng.choice(
            [
                None,
                True,
                0,
                -1,
                2**63,
                1.5,
                "",
                " ",
                [],
                {},
                [None],
                {"x": 1},
                ["a"] * 1000,
                _nest(rng.randint(20, 200)),
            ]
        )
    raise ValueError(f"no hostile value of class {kind!r}")


def _nest(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _hostile_body(rng: random.Random, valid: bytes) -> bytes:
    choice = rng.randrange(9)
    if choice == 0:
        return b""
    if choice == 1:
        return valid[: rng.randrange(1, len(valid))]
    if choice == 2:
        return b"\xef\xbb\xbf" + valid  # a byte-order mark
    if choice == 3:
        return valid.replace(b'"', b"\xff", 1)
    if choice == 4:
        return b"[" * 100_000 + b"]" * 100_000
    if choice == 5:
        return rng.choice([b"[]", b'"x"', b"1", b"null", b"NaN", b"1" * 5000])
    if choice == 6:
        return b'{"ywlx": "x", "ywlx": ' + valid + b"}"
    if choice == 7:
        return valid[:-1] + b', "\\ud800": "\\udfff"}'
    return valid[:-1] + b', "' + b"k" * 300_000 + b'": 1}'


# -- the corpus -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FuzzCase:
    """One request body and the classes of hostile input in it."""

    body: bytes
    classes: frozenset[str]


_ENVELOPE_KEYS: Final = ("ajbh", "glbh", "yyxx", "qx", "jsdw", "fsdw", "fj")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


def _mutate(doc: dict[str, Any], rng: random.Random, kind: str) -> None:
    """Put a value of class ``kind`` somewhere in ``doc`` (in place)."""
    where = rng.random()
    if where < 0.3:
        key = rng.choice(_ENVELOPE_KEYS)
        doc[key] = _hostile(rng, kind, doc.get(key))
        return
    if where < 0.4:
        name = _hostile(rng, kind, "x") if kind in UNPRINTABLE else f"x{rng.randint(0, 9)}"
        doc[name] = _hostile(rng, kind, None)
        return
    path = rng.choice(_paths(doc))
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = _hostile(rng, kind, parent[path[-1]])


def _dumps(value: Any) -> str:
    if isinstance(value, _Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_dumps(k)}: {_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dumps(v) for v in value) + "]"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: only JSON's \\u escape can carry it
            return json.dumps(value, ensure_ascii=True)
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def corpus(kind: str, *, cases: int, seed: int) -> Iterator[FuzzCase]:
    """``cases`` hostile bodies for adapter ``kind``; the first ones use each class in turn."""
    rng = random.Random(f"{seed}/{kind}")
    seeds = ADAPTERS[kind].seeds("阳城执〔2026〕0001号")
    for i in range(cases):
        first = CLASSES[i % len(CLASSES)] if i < 2 * len(CLASSES) else rng.choice(CLASSES)
        doc = json.loads(json.dumps(rng.choice(seeds)))
        if first == "body":
            yield FuzzCase(_hostile_body(rng, _dumps(doc).encode()), frozenset({"body"}))
            continue
        used = {first}
        _mutate(doc, rng, first)
        for _ in range(rng.choice([0, 0, 1, 2])):
            extra = rng.choice([c for c in CLASSES if c != "body"])
            used.add(extra)
            _mutate(doc, rng, extra)
        yield FuzzCase(_dumps(doc).encode("utf-8"), frozenset(used))


# -- running it ----------------------------------------------------------------------------------


@dataclass
class FuzzResult:
    """What one adapter answered to a corpus."""

    kind: str
    statuses: Counter[int] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    """The first few 5xx answers, with the start of their bodies."""
    unnamed: list[str] = field(default_factory=list)
    """4xx answers without a problem list naming field and rule."""

    @property
    def cases(self) -> int:
        """Requests sent."""
        return sum(self.statuses.values())

    @property
    def five_xx(self) -> int:
        """Answers of 500 or more."""
        return sum(n for status, n in self.statuses.items() if status >= 500)


async def run_corpus(
    kind: str, settings: Settings, *, key_dir: Path, cases: int, seed: int
) -> FuzzResult:
    """Serve adapter ``kind`` on ``settings``' database and send it :func:`corpus`.

    The agencies must be in the registry (``sync_agencies``). The seeds are sent first and must
    be accepted, so the corpus is known to start from documents the adapter takes.
    """
    from adapters._framework.app import create_app

    spec = ADAPTERS[kind]
    algorithm = algorithm_of_profile(settings.crypto_profile)
    files = write_keypair(spec.agency, key_dir / kind, overwrite=True, algorithm=algorithm)
    config = AdapterConfig(
        adapter_kind=kind,
        agencies=(AgencyEndpoint(agency_id=spec.agency, key_file=files.private_key),),
    )
    service = spec.build_service(settings, config, run_relay=False, run_readers=False)
    result = FuzzResult(kind)
    async with service:
        token = await create_token(service.pool, spec.agency)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        transport = httpx.ASGITransport(
            app=create_app(service, manage_service=False), raise_app_exceptions=False
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
            for doc in spec.seeds("阳城执〔2026〕0001号"):
                r = await client.post("/v1/submissions", json=doc, headers=headers)
                if r.status_code != 202:
                    raise AssertionError(f"{kind}: a seed was refused: {r.text[:500]}")
            for case in corpus(kind, cases=cases, seed=seed):
                r = await client.post("/v1/submissions", content=case.body, headers=headers)
                result.statuses[r.status_code] += 1
                result.classes.update(case.classes)
                if r.status_code >= 500:
                    if len(result.server_errors) < 5:
                        result.server_errors.append(f"{_shown(case.body)} -> {r.text[:300]}")
                elif r.status_code >= 400 and not _names_field_and_rule(r):
                    result.unnamed.append(f"{_shown(case.body)} -> {r.text[:200]}")
    return result


def _names_field_and_rule(response: httpx.Response) -> bool:
    try:
        problems = response.json()["problems"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(problems) and all(
        isinstance(p.get("field"), str) and p.get("rule") and p.get("message_zh") for p in problems
    )


def _shown(body: bytes) -> str:
    return body[:300].decode("utf-8", "backslashreplace")
