"""Tenant settings and API-key records in Neo4j. Keys are stored only as a peppered hash; the
secret is shown once, when it is created (server/auth.py makes and checks them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graph.store import GraphStore, Query

ALL_TENANTS = "*"  # the operator's scope over keys: every tenant's (never a tenant id)

_SET_SHARING = Query("tenancy.set_sharing", """
MERGE (t:Tenant {tenant_id: $tenant})
SET t.share_identities = coalesce($share_identities, t.share_identities, false),
    t.network_opt_out = coalesce($network_opt_out, t.network_opt_out, false)
RETURN t.share_identities AS share_identities, t.network_opt_out AS network_opt_out
""")
_CREATE_KEY = Query("tenancy.create_key", """
MERGE (t:Tenant {tenant_id: $tenant})
CREATE (k:ApiKey {key_id: $key_id, tenant_id: $tenant, role: $role, scopes: $scopes, label: $label,
                  hash: $hash, created_at: $created_at, revoked: false})
""")
_REVOKE_KEY = Query("tenancy.revoke_key", """
MATCH (k:ApiKey {key_id: $key_id}) WHERE ($tenant = '*' OR k.tenant_id = $tenant) AND NOT k.revoked
SET k.revoked = true
RETURN count(k) AS n
""")
_KEYS = Query("tenancy.keys", """
MATCH (k:ApiKey) WHERE $tenant = '*' OR k.tenant_id = $tenant
RETURN k.key_id AS key_id, k.tenant_id AS tenant, k.role AS role, k.scopes AS scopes, k.label AS label,
       k.hash AS hash, k.created_at AS created_at, k.revoked AS revoked
ORDER BY k.created_at DESC, k.key_id
""")


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    tenant: str
    role: str
    scopes: tuple[str, ...]
    label: str
    hash: str
    created_at: int
    revoked: bool


def set_sharing(store: GraphStore, tenant: str, *, share_identities: bool | None = None,
                network_opt_out: bool | None = None) -> dict[str, Any]:
    """Opt a tenant in to showing its members to other tenants' paths, or out of network sharing."""
    return store.read_write(_SET_SHARING, tenant=tenant, share_identities=share_identities,
                            network_opt_out=network_opt_out)[0]


def create_key(store: GraphStore, record: ApiKeyRecord) -> None:
    store.write(_CREATE_KEY, key_id=record.key_id, tenant=record.tenant, role=record.role,
                scopes=list(record.scopes), label=record.label, hash=record.hash, created_at=record.created_at)


def revoke_key(store: GraphStore, key_id: str, tenant: str) -> bool:
    """Revoke `tenant`'s key `key_id` (ALL_TENANTS: whichever tenant's it is)."""
    return int(store.read_write(_REVOKE_KEY, key_id=key_id, tenant=tenant)[0]["n"]) > 0


def keys(store: GraphStore, tenant: str) -> list[ApiKeyRecord]:
    """`tenant`'s API keys (ALL_TENANTS: every tenant's)."""
    return [ApiKeyRecord(key_id=r["key_id"], tenant=r["tenant"], role=r["role"], scopes=tuple(r["scopes"] or ()),
                         label=r["label"] or "", hash=r["hash"], created_at=int(r["created_at"]), revoked=bool(r["revoked"]))
            for r in store.read(_KEYS, tenant=tenant)]
