"""Whose data a read may return. Every read of the graph names one (graph/reader.py): there is no
default, so forgetting it cannot fail open."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TenantScope:
    """Whose data a read may return: the named tenants, or (`ALL_TENANTS`) every tenant's."""

    tenants: frozenset[str] | None

    @staticmethod
    def of(*tenants: str) -> TenantScope:
        return TenantScope(frozenset(tenants))

    def allows(self, tenant: str | None) -> bool:
        return self.tenants is None or tenant in self.tenants

    def names(self) -> list[str] | None:
        """The tenants as a sorted list for a query parameter; None for every tenant."""
        return None if self.tenants is None else sorted(self.tenants)


ALL_TENANTS = TenantScope(None)  # the snapshot, training and operators only
