"""Fictional people, companies and institutions, with identity numbers that pass their checks.

Names follow the redaction habit of published Chinese case documents (张某某, 昆明某某建材有限公司),
so no sample can be mistaken for a real person or firm. Identity numbers are random but carry valid
check characters — resident ID numbers per GB 11643, organisation codes per GB 11714, unified
social credit codes per GB 32100 — because adapters may check them.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from bus.models import IdDocumentType, PartyRole, Subject, TransferParty

__all__ = [
    "company",
    "credit_code",
    "institution",
    "official",
    "person",
    "phone",
    "resident_id",
    "transfer_party",
]

_SURNAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何罗段普字尹孔施苏"

# Administrative division codes (GB/T 2260) around Yangzonghai, with the address they stand for.
_REGIONS: dict[str, str] = {
    "530125": "云南省昆明市宜良县",
    "530114": "云南省昆明市呈贡区",
    "530111": "云南省昆明市官渡区",
    "530127": "云南省昆明市嵩明县",
    "530126": "云南省昆明市石林彝族自治县",
    "530181": "云南省安宁市",
    "530302": "云南省曲靖市麒麟区",
    "532301": "云南省楚雄市",
}
_TOWNS = ("汤池街道", "七甸街道", "阳宗镇")
_CITY_PREFIXES = ("昆明", "云南", "宜良", "昆明阳宗海")
_FORMS = ("有限公司", "有限公司", "有限责任公司", "经营部")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def _name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + rng.choice(("某", "某某", "某某"))


def resident_id(rng: random.Random, region: str | None = None) -> str:
    """An 18-character resident ID number (居民身份证号码) with a valid GB 11643 check character."""
    region = region or rng.choice(list(_REGIONS))
    born = date(1958, 1, 1) + timedelta(days=rng.randrange(42 * 365))
    body = f"{region}{born:%Y%m%d}{rng.randrange(1000):03d}"
    total = sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True))
    return body + "10X98765432"[total % 11]


def credit_code(rng: random.Random, *, division: str = "530100") -> str:
    """An 18-character unified social credit code (统一社会信用代码) of a company (91…)."""
    org = f"{rng.randrange(10**8):08d}"
    check = 11 - sum(int(c) * w for c, w in zip(org, _ORG_WEIGHTS, strict=True)) % 11
    org += {10: "X", 11: "0"}.get(check, str(check))
    body = f"91{division}{org}"
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    return body + _USCC_ALPHABET[(31 - total % 31) % 31]


def person(rng: random.Random) -> Subject:
    """A private person with a resident ID card and a home address."""
    region = rng.choice(list(_REGIONS))
    address = f"{_REGIONS[region]}某某镇某某村{rng.randint(1, 180)}号"
    return Subject(
        name=_name(rng),
        id_type=IdDocumentType.RESIDENT_ID_CARD,
        id_number=resident_id(rng, region),
        address=address,
    )


def company(rng: random.Random, trades: tuple[str, ...]) -> Subject:
    """A company in one of ``trades`` (e.g. 建材), identified by its credit code."""
    name = f"{rng.choice(_CITY_PREFIXES)}某某{rng.choice(trades)}{rng.choice(_FORMS)}"
    address = f"云南省昆明市阳宗海风景名胜区{rng.choice(_TOWNS)}某某路{rng.randint(1, 260)}号"
    return Subject(
        name=name,
        id_type=IdDocumentType.UNIFIED_SOCIAL_CREDIT_CODE,
        id_number=credit_code(rng, division=rng.choice(("530100", "530125", "530114"))),
        address=address,
    )


def transfer_party(subject: Subject, role: PartyRole) -> TransferParty:
    """``subject`` in a role of a transferred case."""
    return TransferParty(
        name=subject.name,
        role=role,
        id_type=subject.id_type,
        id_number=subject.id_number,
        address=subject.address,
    )


def official(rng: random.Random) -> str:
    """The name of a civil servant or officer, redacted the same way."""
    return _name(rng)


def institution(rng: random.Random, trade: str) -> tuple[str, str]:
    """A qualified institution (检测、鉴定、测绘机构) and its credit code."""
    return f"云南某某{trade}", credit_code(rng, division=rng.choice(("530100", "530102")))


def phone(rng: random.Random) -> str:
    """An office telephone number in Kunming (area code 0871)."""
    return f"0871-675{rng.randrange(10**5):05d}"
