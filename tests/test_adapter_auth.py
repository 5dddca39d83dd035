"""How the framework's one token reading names a caller for the record (``auth.caller``).

The procuratorate's query audit runs before any route, so it cannot use the FastAPI dependency;
it names the caller the way the dependency judges the token, not with a parser of its own.
"""

from __future__ import annotations

import base64
from typing import Any

from adapters._framework.auth import ANONYMOUS, INVALID_TOKEN, caller, hash_token


class Tokens:
    """The one query ``token_agency`` makes, answered from a dict of active tokens."""

    def __init__(self, active: dict[str, str]) -> None:
        self._by_hash = {hash_token(t): a for t, a in active.items()}
        self.asked = 0

    async def fetchval(self, _sql: str, digest: bytes) -> Any:
        self.asked += 1
        return self._by_hash.get(digest)


async def test_a_request_without_a_bearer_token_is_anonymous() -> None:
    db = Tokens({})
    basic = "Basic " + base64.b64encode(b"x:cbt_secret").decode()
    for header in ("", "Bearer", "Bearer   ", basic, "Token cbt_secret"):
        assert await caller(db, header) == ANONYMOUS, header
    assert db.asked == 0


async def test_an_unknown_token_is_named_as_the_401_names_it() -> None:
    db = Tokens({"cbt_known": "ygh.procuratorate"})
    assert await caller(db, "Bearer cbt_unknown") == INVALID_TOKEN == "invalid_token"
    assert await caller(db, "bearer  cbt_known ") == "ygh.procuratorate"
