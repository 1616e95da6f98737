"""Teams as the tenants' member records name them, read from the serving snapshot: whose deals a
key scoped to a team (`team:CODE`) sees, and each deal owner's team for the roll-ups by team."""

from __future__ import annotations

from server.auth import AuthContext
from server.snapshot import Snapshot


def visible_owners(snap: Snapshot, auth: AuthContext) -> frozenset[str] | None:
    """The owners whose deals the key sees: its team's members (pids) for a key scoped to a team,
    None (every owner of its tenant's deals) otherwise."""
    if auth.team_scope is None:
        return None
    index = snap.tenants.index.get(auth.tenant)
    nodes = snap.team_members(index, auth.team_scope) if index is not None else ()
    return frozenset(snap.pid(int(node)) for node in nodes)


def owner_teams(snap: Snapshot, tenant: str, owners: list[str]) -> dict[str, str]:
    """Each owner's team as a member of the tenant ("" for none named)."""
    index = snap.tenants.index.get(tenant)
    if index is None:
        return {}
    nodes = {owner: snap.node(owner) for owner in owners}
    return {owner: snap.team(node, index) for owner, node in nodes.items() if node is not None}
