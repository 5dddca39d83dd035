"""The routing policy (``deploy/routing.yaml``): who may send which message kind to whom.

The policy is data (design.md §5). :func:`load_policy` reads it together with the agency
registry, checks it at start-up and raises one :class:`RoutingPolicyError` (a
:class:`~bus.errors.ConfigError`) listing every problem with the file line it comes from. The
router then asks :meth:`RoutingPolicy.authorize` about each message; a later ``casebus acl plan``
derives Kafka ACLs and docs from :meth:`RoutingPolicy.rules` and :meth:`RoutingPolicy.grants`.

An optional ``signatures:`` section requires a signature algorithm (the 国密 profile's
``sm2-sm3``) of given kinds, given senders, or both: :meth:`RoutingPolicy.check_signature` is what
the router (after verifying the signature) and the adapters (at submit) ask.

The file is parsed with PyYAML's node API (``yaml.compose``) rather than ``safe_load`` so that
each problem can name its line, and so that a kind written twice is caught instead of the second
entry silently replacing the first.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, get_args

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bus.agencies import Agency, AgencyKind, Registry
from bus.errors import ConfigError, Problem, RoutingPolicyError, UnknownKindError
from bus.models import KINDS
from bus.settings import REPO_ROOT
from bus.signing import ALGORITHMS, PROFILES

__all__ = [
    "DEFAULT_POLICY_PATH",
    "AgencyGrants",
    "KindRule",
    "Route",
    "RouteDecision",
    "RoutingPolicy",
    "SignatureRule",
    "load_policy",
    "parse_policy",
]

DEFAULT_POLICY_PATH: Final = REPO_ROOT / "deploy" / "routing.yaml"
"""The shipped routing policy."""

_AGENCY_KINDS: Final[tuple[str, ...]] = get_args(AgencyKind)
_PROFILE_OF: Final[Mapping[str, str]] = {a: p for p, a in PROFILES.items()}

_KIND_ZH: Final[Mapping[str, str]] = {
    "enforcement": "执法机关",
    "regulator": "行政管理部门",
    "police": "公安机关",
    "procuratorate": "检察院",
    "court": "法院",
    "bus": "总线",
}
_STR = "tag:yaml.org,2002:str"
_RULE_FIELDS: Final = ("zh", "en", "routes", "copy_to")
_ROUTE_FIELDS: Final = ("from", "to")
_SIGNATURE_FIELDS: Final = ("algorithm", "kinds", "senders")


@dataclass(frozen=True, slots=True)
class Route:
    """One grant: any agency matching ``senders`` may send to any matching ``recipients``.

    Entries are written as in the file: an agency kind or an exact agency id.
    """

    senders: tuple[str, ...]
    recipients: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True)
class KindRule:
    """Everything the policy says about one message kind, with its notes and file line."""

    kind: str
    zh: str
    en: str
    routes: tuple[Route, ...]
    copy_to: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True)
class SignatureRule:
    """One entry of ``signatures:``: messages of ``kinds`` from ``senders`` must be signed with
    ``algorithm``. An empty ``kinds`` is every kind, an empty ``senders`` every sender (written
    as in the file: agency kinds or exact agency ids)."""

    algorithm: str
    kinds: tuple[str, ...]
    senders: tuple[str, ...]
    line: int

    def describe(self) -> str:
        """What the rule covers, for refusals: ``criminal.transfer from police``."""
        kinds = ", ".join(self.kinds) if self.kinds else "every kind"
        return kinds + (f" from {', '.join(self.senders)}" if self.senders else "")


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The answer to one message: deliver it to ``deliver_to``, or refuse it for ``problems``.

    ``deliver_to`` is empty when refused; ``copies`` are the automatic copies within it.
    """

    allowed: bool
    problems: list[Problem]
    deliver_to: tuple[str, ...]
    copies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgencyGrants:
    """What one agency may send and may receive, for docs and Kafka ACL planning."""

    agency_id: str
    kind: AgencyKind
    sends: tuple[str, ...]
    receives: tuple[str, ...]
    """Kinds it may be named a recipient of, or gets as an automatic copy."""
    copied: tuple[str, ...] = ()
    """The subset of ``receives`` it gets as an automatic copy."""


# --- the policy ------------------------------------------------------------------------------


class RoutingPolicy:
    """The checked policy, resolved against one registry: answers who may send what to whom.

    Build it with :func:`load_policy`; the constructor trusts its rules to be checked already.
    """

    def __init__(
        self,
        rules: Sequence[KindRule],
        registry: Registry,
        *,
        source: str = "<policy>",
        signatures: Sequence[SignatureRule] = (),
    ) -> None:
        self.source = source
        self._rules = {rule.kind: rule for rule in rules}
        self._agencies = {a.id: a for a in registry.agencies}
        self._registry = registry
        self._pairs: dict[str, frozenset[tuple[str, str]]] = {}
        self._senders: dict[str, frozenset[str]] = {}
        self._receivers: dict[str, frozenset[str]] = {}
        self._copies: dict[str, tuple[str, ...]] = {}
        for rule in rules:
            pairs = {
                (s, r)
                for route in rule.routes
                for s in self._members(route.senders)
                for r in self._members(route.recipients)
            }
            self._pairs[rule.kind] = frozenset(pairs)
            self._senders[rule.kind] = frozenset(s for s, _ in pairs)
            self._receivers[rule.kind] = frozenset(r for _, r in pairs)
            self._copies[rule.kind] = self._members(rule.copy_to)
        self._signatures = tuple(signatures)
        self._signers = tuple(frozenset(self._members(r.senders)) for r in self._signatures)
        self._required: dict[tuple[str, str], SignatureRule | None] = {}

    def _members(self, entries: Sequence[str]) -> tuple[str, ...]:
        """The agency ids the entries stand for, in entry order (a kind: registry order)."""
        ids: list[str] = []
        for entry in entries:
            if entry in _AGENCY_KINDS:
                ids.extend(a.id for a in self._registry.agencies if a.kind == entry)
            elif entry in self._agencies:
                ids.append(entry)
            else:
                raise ConfigError(f"{self.source}: {entry!r} is no agency kind or agency id")
        return tuple(dict.fromkeys(ids))

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind the policy has a rule for, in file order."""
        return tuple(self._rules)

    def rules(self) -> tuple[KindRule, ...]:
        """Every rule, in file order (for docs and ACL generation)."""
        return tuple(self._rules.values())

    def rule(self, kind: str) -> KindRule:
        """The rule of one kind; :class:`UnknownKindError` if there is none."""
        try:
            return self._rules[kind]
        except KeyError:
            raise UnknownKindError(f"no routing rule for kind {kind!r}") from None

    def copies_for(self, kind: str) -> tuple[str, ...]:
        """The agency ids that get an automatic copy of every message of ``kind``."""
        self.rule(kind)
        return self._copies[kind]

    def may_send(self, sender: str, kind: str) -> bool:
        """Whether agency ``sender`` may send ``kind`` to anyone at all."""
        return sender in self._senders.get(kind, frozenset())

    def signature_rules(self) -> tuple[SignatureRule, ...]:
        """The ``signatures:`` rules, in file order."""
        return self._signatures

    def required_algorithm(self, kind: str, sender: str) -> SignatureRule | None:
        """The rule that fixes the signature algorithm of ``kind`` from ``sender``, or None when
        any algorithm the registry knows will do. (The parser refuses rules that overlap with
        different algorithms, so the first match is the only one.) Remembered per pair: the
        router asks for every message, and a policy never changes once built."""
        try:
            return self._required[kind, sender]
        except KeyError:
            pass
        found = next(
            (
                rule
                for rule, senders in zip(self._signatures, self._signers, strict=True)
                if (not rule.kinds or kind in rule.kinds)
                and (not rule.senders or sender in senders)
            ),
            None,
        )
        if kind in self._rules and sender in self._agencies:  # bounded: kinds x agencies
            self._required[kind, sender] = found
        return found

    def check_signature(self, *, kind: str, sender: str, algorithm: str) -> tuple[Problem, ...]:
        """The problem (rule ``signature_algorithm_not_allowed``, path ``signature.algorithm``)
        when the policy requires another algorithm than ``algorithm`` for ``kind`` from
        ``sender``; empty when it does not."""
        rule = self.required_algorithm(kind, sender)
        if rule is None or rule.algorithm == algorithm:
            return ()
        where = f"{self.source}:{rule.line}"
        return (
            Problem(
                "signature.algorithm",
                "signature_algorithm_not_allowed",
                f"{kind} from {sender} must be signed with {rule.algorithm}, not {algorithm} "
                f"(signatures rule at {where}: {rule.describe()}); the agency's key must "
                f"be rotated (casebus agency key rotate --alg {_PROFILE_OF[rule.algorithm]})",
                algorithm,
                f"{sender} 发送的 {kind} 须使用 {rule.algorithm} 签名，不得使用 {algorithm}"
                f"（{where} 的签名算法规则）",
            ),
        )

    def grants(self) -> dict[str, AgencyGrants]:
        """Per agency id (registry order): the kinds it may send and the kinds it may receive."""
        out: dict[str, AgencyGrants] = {}
        for agency in self._registry.agencies:
            sends = tuple(k for k in self._rules if agency.id in self._senders[k])
            copied = tuple(k for k in self._rules if agency.id in self._copies[k])
            receives = tuple(
                k for k in self._rules if k in copied or agency.id in self._receivers[k]
            )
            out[agency.id] = AgencyGrants(agency.id, agency.kind, sends, receives, copied)
        return out

    def authorize(self, *, kind: str, sender: str, recipients: Sequence[str]) -> RouteDecision:
        """Decide one message: every named recipient must be allowed, or nothing is delivered.

        A message whose recipients are partly refused is refused whole — a department must not
        learn that some of its addressees got it and others did not. When allowed,
        ``deliver_to`` is the named recipients (duplicates dropped, in order) followed by the
        automatic copies, never including the sender unless it named itself. Problems carry
        the rule codes ``unknown_kind``, ``unknown_agency``, ``no_recipients``,
        ``sender_kind_not_allowed`` and ``unauthorized_route``, with ``path`` ``kind``,
        ``sender`` or ``recipients[i]``.
        """
        problems: list[Problem] = []
        rule = self._rules.get(kind)
        if rule is None:
            zh = f"未知的消息类型 {kind}"
            problems.append(Problem("kind", "unknown_kind", f"no rule for kind {kind!r}", kind, zh))
        agency = self._agencies.get(sender)
        if agency is None:
            message, zh = (
                f"sender {sender!r} is not in the registry",
                f"发送方 {sender} 不在机构名录中",
            )
            problems.append(Problem("sender", "unknown_agency", message, sender, zh))
        if not recipients:
            message, zh = "a message needs at least one recipient", "未指定收件方"
            problems.append(Problem("recipients", "no_recipients", message, None, zh))
        checked: Agency | None = None  # the sender, once it may send this kind at all
        if rule is not None and agency is not None:
            if agency.id in self._senders[kind]:
                checked = agency
            else:
                problems.append(_sender_refused(rule, agency))
        named = list(dict.fromkeys(recipients))
        for r in named:
            target = self._agencies.get(r)
            if target is None:
                message, zh = (
                    f"recipient {r!r} is not in the registry",
                    f"收件方 {r} 不在机构名录中",
                )
                problems.append(
                    Problem(_recipient_path(recipients, r), "unknown_agency", message, r, zh)
                )
            elif rule and checked and (sender, r) not in self._pairs[kind]:
                path = _recipient_path(recipients, r)
                problems.append(_recipient_refused(path, rule, checked, target))
        if problems:
            return RouteDecision(allowed=False, problems=problems, deliver_to=())
        copies = tuple(c for c in self._copies[kind] if c != sender and c not in named)
        return RouteDecision(allowed=True, problems=[], deliver_to=(*named, *copies), copies=copies)


def _recipient_path(recipients: Sequence[str], recipient: str) -> str:
    """The path of ``recipient``'s first place in ``recipients``, for its problem."""
    return f"recipients[{recipients.index(recipient)}]"


def _sender_refused(rule: KindRule, agency: Agency) -> Problem:
    allowed = _join(e for route in rule.routes for e in route.senders)
    return Problem(
        "sender",
        "sender_kind_not_allowed",
        f"{agency.id} ({agency.kind}) may not send {rule.kind}; senders allowed: {allowed}",
        agency.id,
        f"{agency.id}（{_KIND_ZH[agency.kind]}）无权发送 {rule.kind}",
    )


def _recipient_refused(path: str, rule: KindRule, agency: Agency, target: Agency) -> Problem:
    allowed = _join(
        e
        for route in rule.routes
        if agency.id in route.senders or agency.kind in route.senders
        for e in route.recipients
    )
    return Problem(
        path,
        "unauthorized_route",
        f"{agency.id} ({agency.kind}) may not send {rule.kind} to {target.id} ({target.kind}); "
        f"recipients allowed: {allowed}",
        target.id,
        f"{agency.id} 无权向 {target.id}（{_KIND_ZH[target.kind]}）发送 {rule.kind}",
    )


def _join(entries: Iterator[str]) -> str:
    return ", ".join(dict.fromkeys(entries))


# --- reading the file ------------------------------------------------------------------------


def load_policy(path: Path | str, registry: Registry) -> RoutingPolicy:
    """Read and check a policy file against ``registry``.

    Raises :class:`RoutingPolicyError` naming every problem with its line: unknown message
    kind, unknown agency kind or id, a kind without a rule, a copy target not in the registry,
    a duplicate kind, route or entry, a missing or unknown field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read routing policy: {e}") from e
    return parse_policy(text, registry, source=str(path))


def parse_policy(text: str, registry: Registry, *, source: str = "<policy>") -> RoutingPolicy:
    """Check policy text against ``registry``; like :func:`load_policy`, for text in hand."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: routing policy is not valid YAML: {e}") from e
    parser = _Parser(source, registry)
    rules = parser.parse(root)
    if parser.problems:
        ordered = sorted(parser.problems, key=lambda p: int(p.path.rpartition(":")[2]))
        raise RoutingPolicyError(source, ordered)
    return RoutingPolicy(rules, registry, source=source, signatures=parser.signature_rules)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 1


def _hint(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Parser:
    """Walks the composed YAML nodes and collects every problem instead of stopping at one."""

    def __init__(self, source: str, registry: Registry) -> None:
        self.source = source
        self.registry = registry
        self.ids = {a.id for a in registry.agencies}
        self.problems: list[Problem] = []
        self.signature_rules: list[SignatureRule] = []

    def problem(self, node: Node, rule: str, message: str, value: object = None) -> None:
        self.problems.append(Problem(f"{self.source}:{_line(node)}", rule, message, value))

    def text(self, node: Node, what: str) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == _STR and str(node.value).strip():
            return str(node.value)
        self.problem(node, "wrong_type", f"{what} must be non-empty text", node.value)
        return None

    def mapping(self, node: Node, what: str, allowed: Sequence[str]) -> dict[str, Node] | None:
        """A mapping's fields by name; reports duplicate and unknown fields."""
        if not isinstance(node, MappingNode):
            self.problem(node, "wrong_type", f"{what} must be a mapping")
            return None
        fields: dict[str, Node] = {}
        for key, value in node.value:
            name = self.text(key, f"a field name in {what}")
            if name is None:
                continue
            if name in fields:
                self.problem(key, "duplicate_field", f"{what}: field {name!r} appears twice")
            elif name not in allowed:
                hint = _hint(name, allowed)
                self.problem(key, "unknown_field", f"{what}: unknown field {name!r}{hint}", name)
            fields[name] = value
        return fields

    def parse(self, root: Node | None) -> list[KindRule]:
        if root is None:
            self.problems.append(
                Problem(f"{self.source}:1", "empty_file", "the policy file is empty")
            )
            return []
        top = self.mapping(root, "the policy file", ("version", "kinds", "signatures"))
        if top is None:
            return []
        if "signatures" in top:
            self.signatures(top["signatures"])
        version = top.get("version")
        if version is None:
            self.problem(root, "missing_field", "field 'version' is missing (version: 1)")
        elif not (isinstance(version, ScalarNode) and version.value == "1"):
            self.problem(version, "bad_version", "only version 1 is known", version.value)
        kinds = top.get("kinds")
        if kinds is None:
            self.problem(root, "missing_field", "field 'kinds' is missing")
            return []
        key = next(k for k, v in root.value if v is kinds)
        return self.kinds(heading=key, node=kinds)

    def signatures(self, node: Node) -> None:
        """The ``signatures:`` rules (an empty section or ``[]`` is none); two rules that can
        cover the same kind from the same sender must require the same algorithm."""
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return
        if not isinstance(node, SequenceNode):
            self.problem(node, "wrong_type", "signatures must be a list of rules")
            return
        resolved: list[tuple[SignatureRule, frozenset[str], frozenset[str] | None]] = []
        for item in node.value:
            rule = self.signature(item)
            if rule is None:
                continue
            kinds = frozenset(rule.kinds or KINDS)
            senders = frozenset(self.members(rule.senders)) if rule.senders else None
            for other, other_kinds, other_senders in resolved:
                overlap = kinds & other_kinds and (
                    senders is None or other_senders is None or senders & other_senders
                )
                if overlap and other.algorithm != rule.algorithm:
                    shared = sorted(kinds & other_kinds)
                    some = ", ".join(shared[:3]) + (", ..." if len(shared) > 3 else "")
                    self.problem(
                        item,
                        "conflicting_signature_rule",
                        f"signatures: this rule requires {rule.algorithm} and the rule at line "
                        f"{other.line} {other.algorithm} of some of the same messages ({some})",
                        rule.algorithm,
                    )
            resolved.append((rule, kinds, senders))
            self.signature_rules.append(rule)

    def signature(self, node: Node) -> SignatureRule | None:
        what = "signatures: a rule"
        before = len(self.problems)
        fields = self.mapping(node, what, _SIGNATURE_FIELDS)
        if fields is None:
            return None
        algorithm: str | None = None
        if "algorithm" not in fields:
            self.problem(
                node, "missing_field", f"{what} has no 'algorithm' ({' or '.join(ALGORITHMS)})"
            )
        elif (name := self.text(fields["algorithm"], f"{what}: algorithm")) is not None:
            if name in ALGORITHMS:
                algorithm = name
            else:
                self.problem(
                    fields["algorithm"],
                    "unknown_algorithm",
                    f"{what}: unknown signature algorithm {name!r} (known: "
                    f"{', '.join(ALGORITHMS)}){_hint(name, ALGORITHMS)}",
                    name,
                )
        kinds: list[str] = []
        if "kinds" in fields:
            node_kinds = fields["kinds"]
            items = node_kinds.value if isinstance(node_kinds, SequenceNode) else [node_kinds]
            if not items:
                self.problem(
                    node_kinds,
                    "wrong_type",
                    f"{what}: kinds must name at least one kind (leave it out for every kind)",
                )
            for item in items:
                kind = self.text(item, f"an entry of {what}: kinds")
                if kind is None:
                    continue
                if kind in kinds:
                    self.problem(
                        item, "duplicate_entry", f"{what}: kinds: {kind!r} is listed twice", kind
                    )
                elif kind not in KINDS:
                    hint = _hint(kind, KINDS)
                    self.problem(
                        item, "unknown_kind", f"{what}: {kind!r} is not a message kind{hint}", kind
                    )
                else:
                    kinds.append(kind)
        senders: tuple[str, ...] = ()
        if "senders" in fields:
            senders = self.parties(fields["senders"], f"{what}: senders", copy=False)
        if algorithm is None or len(self.problems) > before:
            return None  # a broken rule is reported, not checked against the others
        return SignatureRule(algorithm, tuple(kinds), senders, _line(node))

    def members(self, entries: Sequence[str]) -> list[str]:
        """The agency ids of checked party entries (an agency kind: each of that kind)."""
        return [a.id for e in entries for a in self.registry.agencies if e in (a.id, a.kind)]

    def kinds(self, *, heading: Node, node: Node) -> list[KindRule]:
        """Every rule under ``kinds:``; a kind with no rule is reported at that key's line."""
        if not isinstance(node, MappingNode):
            self.problem(node, "wrong_type", "kinds must map each message kind to its rule")
            return []
        rules: list[KindRule] = []
        seen: dict[str, int] = {}
        for key, value in node.value:
            kind = self.text(key, "a message kind")
            if kind is None:
                continue
            if kind in seen:
                self.problem(
                    key,
                    "duplicate_rule",
                    f"kind {kind!r} has a second rule; the first is at line {seen[kind]}",
                    kind,
                )
                self.rule(kind, key, value)  # its own problems still count
                continue
            seen[kind] = _line(key)
            if kind not in KINDS:
                hint = _hint(kind, KINDS)
                self.problem(key, "unknown_kind", f"{kind!r} is not a message kind{hint}", kind)
            rule = self.rule(kind, key, value)
            if rule is not None and kind in KINDS:
                rules.append(rule)
        for kind in KINDS:
            if kind not in seen:
                self.problem(
                    heading,
                    "missing_rule",
                    f"kind {kind!r} has no rule; every kind must say who may send it",
                    kind,
                )
        return rules

    def rule(self, kind: str, key: Node, node: Node) -> KindRule | None:
        what = f"kind {kind!r}"
        fields = self.mapping(node, what, _RULE_FIELDS)
        if fields is None:
            return None
        notes: dict[str, str] = {}
        for name in ("zh", "en"):
            if name not in fields:
                self.problem(key, "missing_field", f"{what}: field {name!r} (the note) is missing")
            elif (note := self.text(fields[name], f"{what}: {name}")) is not None:
                notes[name] = note
        routes: list[Route] = []
        if "routes" not in fields:
            self.problem(key, "missing_rule", f"{what}: field 'routes' is missing", kind)
        elif not isinstance(fields["routes"], SequenceNode):
            self.problem(fields["routes"], "wrong_type", f"{what}: routes must be a list")
        elif not fields["routes"].value:
            self.problem(
                fields["routes"], "missing_rule", f"{what}: routes must list at least one route"
            )
        else:
            granted: dict[tuple[str, str], int] = {}
            for item in fields["routes"].value:
                route = self.route(what, item, granted)
                if route is not None:
                    routes.append(route)
        copies: tuple[str, ...] = ()
        if "copy_to" in fields:
            copies = self.parties(fields["copy_to"], f"{what}: copy_to", copy=True)
        if len(notes) < 2 or not routes:
            return None
        return KindRule(kind, notes["zh"], notes["en"], tuple(routes), copies, _line(key))

    def route(self, what: str, node: Node, granted: dict[tuple[str, str], int]) -> Route | None:
        fields = self.mapping(node, f"{what}: a route", _ROUTE_FIELDS)
        if fields is None:
            return None
        sides: dict[str, tuple[str, ...]] = {}
        for name in _ROUTE_FIELDS:
            if name not in fields:
                self.problem(node, "missing_field", f"{what}: a route has no {name!r}")
            else:
                sides[name] = self.parties(fields[name], f"{what}: {name}", copy=False)
        if len(sides) < 2 or not sides["from"] or not sides["to"]:
            return None
        for pair in ((s, r) for s in sides["from"] for r in sides["to"]):
            if pair in granted:
                self.problem(
                    node,
                    "duplicate_rule",
                    f"{what}: route {pair[0]} → {pair[1]} is already granted at line "
                    f"{granted[pair]}",
                    f"{pair[0]} → {pair[1]}",
                )
            else:
                granted[pair] = _line(node)
        return Route(sides["from"], sides["to"], _line(node))

    def parties(self, node: Node, what: str, *, copy: bool) -> tuple[str, ...]:
        """The entries of a party list (a scalar is a list of one), each checked; copy_to may
        be empty, from and to may not."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        if not items and not copy:
            self.problem(node, "wrong_type", f"{what} must name at least one party")
        out: list[str] = []
        for item in items:
            name = self.text(item, f"an entry of {what}")
            if name is None:
                continue
            if name in out:
                self.problem(item, "duplicate_entry", f"{what}: {name!r} is listed twice", name)
            elif self.party(item, name, what, copy=copy):
                out.append(name)
        return tuple(out)

    def party(self, node: Node, name: str, what: str, *, copy: bool) -> bool:
        if name in _AGENCY_KINDS:
            if name in self.ids:
                self.problem(
                    node,
                    "ambiguous_party",
                    f"{what}: {name!r} is both an agency kind and an agency id",
                    name,
                )
                return False
            if copy and not any(a.kind == name for a in self.registry.agencies):
                self.problem(
                    node,
                    "copy_target_not_in_registry",
                    f"{what}: no agency of kind {name!r} is in the registry",
                    name,
                )
                return False
            return True
        if name in self.ids:
            return True
        hint = _hint(name, (*_AGENCY_KINDS, *sorted(self.ids)))
        if copy:
            rule, message = "copy_target_not_in_registry", f"{name!r} is not in the registry"
        elif "." in name:
            rule, message = "unknown_agency_id", f"unknown agency id {name!r} (not in the registry)"
        else:
            rule = "unknown_agency_kind"
            message = f"unknown agency kind {name!r} (kinds: {', '.join(_AGENCY_KINDS)})"
        self.problem(node, rule, f"{what}: {message}{hint}", name)
        return False
