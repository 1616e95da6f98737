"""The one visibility rule: what a requesting tenant T may see of a person P and of other tenants'
data. Every answer the server builds about people goes through `person_view` (warm paths,
ResolvePeople, deal signals); the README's Privacy section states the same rule.

- T *holds* P when T's own records name P: P is T's member, or P appears in a relationship T
  logged (KNOWS), or in an employment, deal or activity record T ingested.
- Identity (pid): shown when T holds P, when P is a member of a tenant that opted in to share
  identities, or when T named P itself (by email, in this request).
- Employer (current company domain): shown when T holds P or P's tenant shares identities; a person
  T merely named, or anyone else, is described by role only.
- Role description (seniority, function, employer's size band and industry): shown for every person
  on an answer T is entitled to (a path over relationships it may use).
- Relationship evidence (last interaction, count, two-way share, shared employers): only for T's
  own relationships; another tenant's relationship lends its strength and nothing else.
- Existence: T learns that a person is in the network only if T holds them or an entitled path
  reaches them; an unknown address and a person T cannot see get the same answer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.vocabulary import FUNCTIONS, TITLE_LEVELS
from server.snapshot import Snapshot

_TITLES = {
    "c_level": "C-level",
    "vp": "VP",
    "director": "Director",
    "manager": "Manager",
    "ic": "Individual contributor",
}


@dataclass(frozen=True)
class PersonFacts:
    """What the requesting tenant may see of one person (the fields of relgraph.v1.PersonView)."""

    pid: str  # empty when masked
    identified: bool
    own_member: bool
    title_level: str
    function: str
    company_domain: str  # empty when masked
    company_size_band: str
    company_industry: str
    description: str


def may_identify(*, held: bool, shared: bool, named: bool) -> bool:
    return held or shared or named


def person_view(
    *,
    pid: str,
    held: bool,
    shared: bool,
    named: bool,
    own_member: bool,
    title_level: str,
    function: str,
    company_domain: str,
    company_size_band: str,
    company_industry: str,
) -> PersonFacts:
    """Apply the rule to what is known of a person."""
    identified = may_identify(held=held, shared=shared, named=named)
    return PersonFacts(
        pid=pid if identified else "",
        identified=identified,
        own_member=own_member,
        title_level=title_level,
        function=function,
        company_domain=company_domain if held or shared else "",
        company_size_band=company_size_band,
        company_industry=company_industry,
        description=describe(title_level, function, company_size_band, company_industry),
    )


def describe(level: str, function: str, band: str, industry: str) -> str:
    """'VP finance at a 201-1000 person fintech company' from whatever is known."""
    function = {"hr": "HR", "it": "IT"}.get(function, function)
    who = " ".join(x for x in (_TITLES.get(level, "Person"), function if function and function != "other" else "") if x)
    where = " ".join(x for x in (f"a {band} person" if band else "a", industry, "company") if x)
    return f"{who} at {where}"


# -- the rule over the serving snapshot ---------------------------------------------------------


def snapshot_view(snap: Snapshot, node: int, tenant: int, named: bool = False) -> PersonFacts:
    """The person `node` as `tenant` may see them; `named`: the request itself named them."""
    level = TITLE_LEVELS[snap.level[node]] if snap.level[node] >= 0 else ""
    function = FUNCTIONS[snap.function[node]] if snap.function[node] >= 0 else ""
    company = int(snap.company[node])
    return person_view(
        pid=snap.pid(node),
        held=snap.held_by(node, tenant),
        shared=snap.shares_identity(node),
        named=named,
        own_member=bool(np.any(snap.memberships(node) == tenant)),
        title_level=level,
        function=function,
        company_domain=snap.companies.cids[company] if company >= 0 else "",
        company_size_band=snap.companies.size_band[company] if company >= 0 else "",
        company_industry=snap.companies.industry[company] if company >= 0 else "",
    )


def shared_employers(snap: Snapshot, a: int, b: int) -> list[str]:
    """Companies both people worked at, in company order (sets: a person has a handful of employers)."""
    common = set(snap.employers(a).tolist()) & set(snap.employers(b).tolist())
    return [snap.companies.cids[c] for c in sorted(common)]
