"""Writes of tenant settings and API-key records (their reads are the GraphReader's). Keys are
stored only as a peppered hash; the secret is shown once, when it is created (server/auth.py makes
and checks them)."""

from __future__ import annotations

from typing import Any

from graph.reader import ApiKeyRecord, TenantScope
from graph.store import GraphStore, Query

_SET_SHARING = Query(
    "tenancy.set_sharing",
    """
MERGE (t:Tenant {tenant_id: $tenant})
SET t.share_identities = coalesce($share_identities, t.share_identities, false),
    t.network_opt_out = coalesce($network_opt_out, t.network_opt_out, false)
RETURN t.share_identities AS share_identities, t.network_opt_out AS network_opt_out
""",
)
_CREATE_KEY = Query(
    "tenancy.create_key",
    """
MERGE (t:Tenant {tenant_id: $tenant})
CREATE (k:ApiKey {key_id: $key_id, tenant_id: $tenant, role: $role, scopes: $scopes, label: $label,
                  hash: $hash, created_at: $created_at, revoked: false})
""",
)
_REVOKE_KEY = Query(
    "tenancy.revoke_key",
    """
MATCH (k:ApiKey {key_id: $key_id}) WHERE ($tenants IS NULL OR k.tenant_id IN $tenants) AND NOT k.revoked
SET k.revoked = true
RETURN count(k) AS n
""",
)


def set_sharing(
    store: GraphStore, tenant: str, *, share_identities: bool | None = None, network_opt_out: bool | None = None
) -> dict[str, Any]:
    """Opt a tenant in to showing its members to other tenants' paths, or out of network sharing."""
    return store.read_write(
        _SET_SHARING, tenant=tenant, share_identities=share_identities, network_opt_out=network_opt_out
    )[0]


def create_key(store: GraphStore, record: ApiKeyRecord) -> None:
    store.write(
        _CREATE_KEY,
        key_id=record.key_id,
        tenant=record.tenant,
        role=record.role,
        scopes=list(record.scopes),
        label=record.label,
        hash=record.hash,
        created_at=record.created_at,
    )


def revoke_key(store: GraphStore, key_id: str, scope: TenantScope) -> bool:
    """Revoke the key `key_id` if it is one of `scope`'s (an operator revokes with ALL_TENANTS)."""
    return int(store.read_write(_REVOKE_KEY, key_id=key_id, tenants=scope.names())[0]["n"]) > 0
