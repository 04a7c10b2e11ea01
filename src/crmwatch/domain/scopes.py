"""OAuth scopes: `ZohoCRM.<family>[.<name>].<operation>`, checked case-insensitively.

`ALL` grants every operation, `WRITE` grants CREATE, UPDATE and DELETE, and a scope without a
name (`ZohoCRM.modules.ALL`) grants every name below it (`ZohoCRM.modules.leads.READ`).

The `/crmwatch/v1` extension API takes Zoho's families for what it shows: the change feed
`modules`, the delivery log and signing secrets `notifications`. The `crmwatch` family that
once was granted beside them is retired: refused in new grants, ignored in stored ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_SCOPES = (
    "ZohoCRM.modules.ALL",
    "ZohoCRM.settings.ALL",
    "ZohoCRM.users.ALL",
    "ZohoCRM.org.ALL",
    "ZohoCRM.notifications.ALL",
    "ZohoCRM.bulk.ALL",
)
FAMILIES = frozenset({"modules", "settings", "users", "org", "notifications", "bulk", "coql"})
RETIRED = frozenset({"crmwatch"})
"""Families granted once and checked nowhere: refused by `parse_scope`, skipped by
`parse_granted`."""
OPERATIONS = frozenset({"ALL", "READ", "CREATE", "UPDATE", "DELETE", "WRITE"})


@dataclass(frozen=True, slots=True)
class Scope:
    family: str
    name: str | None
    operation: str

    def grants(self, family: str, name: str | None, operation: str) -> bool:
        if self.family != family.lower():
            return False
        if self.name is not None and self.name != (name or "").lower():
            return False
        op = operation.upper()
        return (
            self.operation in ("ALL", op)
            or (self.operation == "WRITE" and op in ("CREATE", "UPDATE", "DELETE"))
        )


def parse_scope(text: str) -> Scope:
    """Parse one scope string; raises ValueError when it is not a ZohoCRM scope."""
    parts = text.strip().split(".")
    if len(parts) not in (3, 4) or parts[0].lower() != "zohocrm":
        raise ValueError(f"invalid scope {text!r}")
    family, op = parts[1].lower(), parts[-1].upper()
    if family in RETIRED:
        raise ValueError(f"invalid scope {text!r}: the {family} scope family is retired "
                         "(its API takes the modules and notifications scopes)")
    if family not in FAMILIES or op not in OPERATIONS:
        raise ValueError(f"invalid scope {text!r}")
    return Scope(family, parts[2].lower() if len(parts) == 4 else None, op)


def parse_scopes(text: str | Iterable[str]) -> tuple[Scope, ...]:
    """Parse scopes separated by commas or spaces (Zoho uses both)."""
    items = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    return tuple(parse_scope(item) for item in items)


def parse_granted(text: str) -> tuple[Scope, ...]:
    """Parse the scopes stored with a token, leaving out those of retired families (granted
    before they were retired)."""
    items = text.replace(",", " ").split()
    return tuple(parse_scope(item) for item in items
                 if [*item.split("."), ""][1].lower() not in RETIRED)


def allows(scopes: Iterable[Scope], family: str, name: str | None, operation: str) -> bool:
    """True when any scope grants `operation` on `family` (and `name`, if given)."""
    return any(s.grants(family, name, operation) for s in scopes)


def render(scopes: Iterable[Scope]) -> str:
    """Scopes as the token endpoint lists them: space-separated."""
    return " ".join(
        ".".join(["ZohoCRM", s.family] + ([s.name] if s.name else []) + [s.operation])
        for s in scopes
    )
