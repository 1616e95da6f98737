"""WarmPathsService: validates a request, resolves it against the serving snapshot (targets,
sources, partner scopes), searches, and answers with people and evidence as the visibility rule
(server/visibility.py) allows.

Existence is never given away: a target the tenant does not hold counts in `targets` only when an
answered path reaches it, a partner's out-of-scope person is dropped like an unknown one, and a
request whose targets resolve to nobody still runs a search (on stand-in targets picked from the
request, answer discarded), so an unknown address and an invisible person cost alike."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace

import grpc
import numpy as np
from google.protobuf import timestamp_pb2

from core.clock import Clock
from core.errors import InvalidRequestError, NotFoundError, PermissionDeniedError, RecordError
from core.vocabulary import FUNCTIONS, TITLE_LEVELS, is_code
from graph.pseudonymize import Pseudonymizer, normalize_domain
from relgraph.v1 import common_pb2, warm_paths_pb2, warm_paths_pb2_grpc
from server.auth import AuthContext, current_auth
from server.snapshot import Snapshot
from server.state import ServingStateHolder
from server.strength_scale import StrengthScale, band
from server.visibility import shared_employers, snapshot_view
from server.warm_paths import DEFAULT_MAX_WORK, MAX_HOPS, FoundPath, PathSearch, compile_search, find_paths

DEFAULT_K = 10
MAX_K = 100
MAX_RESOLVE = 1000
_TITLE_LEVELS = frozenset(warm_paths_pb2.TitleLevel.values())
# Economic buyer by title: VP or above in executive or finance.
_ECONOMIC_LEVELS = (TITLE_LEVELS.index("vp"), TITLE_LEVELS.index("c_level"))
_ECONOMIC_FUNCTIONS = (FUNCTIONS.index("executive"), FUNCTIONS.index("finance"))
_PROTO_BAND = {
    "strong": warm_paths_pb2.STRENGTH_BAND_STRONG,
    "medium": warm_paths_pb2.STRENGTH_BAND_MEDIUM,
    "weak": warm_paths_pb2.STRENGTH_BAND_WEAK,
}


def deadline_of(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def person_view(snap: Snapshot, node: int, tenant: int, named: bool = False) -> common_pb2.PersonView:
    """The person as `tenant` may see them; `named`: the request itself identified them."""
    return common_pb2.PersonView(**snapshot_view(snap, node, tenant, named).__dict__)


_MAX_KEPT = 200_000  # descriptions of people, and of relationships, kept per snapshot (a few hundred bytes each)


class _Descriptions:
    """People as each tenant may see them, and relationships' evidence as shown to each tenant,
    kept for the snapshot they were computed from (immutable, so a description stays right until
    the next refresh replaces it): a person or relationship on many answers is described once."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self._views: dict[tuple[int, int, bool], common_pb2.PersonView] = {}
        self._evidence: dict[tuple[int, int], warm_paths_pb2.HopEvidence] = {}

    def view(self, tenant: int, node: int, named: bool) -> common_pb2.PersonView:
        key = (tenant, node, named)
        found = self._views.get(key)
        if found is None:
            found = person_view(self.snap, node, tenant, named)
            if len(self._views) < _MAX_KEPT:
                self._views[key] = found
        return found

    def evidence(self, tenant: int, a: int, b: int, edge: int) -> warm_paths_pb2.HopEvidence:
        """The hop's evidence but its strength and score (those follow the clock)."""
        key = (tenant, edge)
        found = self._evidence.get(key)
        if found is None:
            found = _evidence(self.snap, tenant, a, b, edge)
            if len(self._evidence) < _MAX_KEPT:
                self._evidence[key] = found
        return found


def _evidence(snap: Snapshot, tenant: int, a: int, b: int, edge: int) -> warm_paths_pb2.HopEvidence:
    evidence = warm_paths_pb2.HopEvidence(observed_by_requester=int(snap.edge_tenant[edge]) == tenant)
    if evidence.observed_by_requester:  # another tenant's evidence is used, never shown
        # Both people of the tenant's own relationship are held by it, so their employers show.
        count = int(snap.edge_count[edge])
        employers = shared_employers(snap, a, b)
        evidence.last_interaction.CopyFrom(timestamp_pb2.Timestamp(seconds=int(snap.edge_last_ts[edge])))
        evidence.interaction_count = count
        evidence.two_way_share = min(1.0, 2.0 * int(snap.edge_two_way[edge]) / max(count, 1))
        evidence.shared_employer_count = len(employers)
        evidence.shared_employers.extend(employers)
    return evidence


def _pick(key: str, count: int) -> int:
    """A deterministic pick among `count` items from the request's text, for the stand-in search."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % max(count, 1)


class WarmPathsService(warm_paths_pb2_grpc.WarmPathsServiceServicer):  # type: ignore[misc]
    def __init__(
        self, holder: ServingStateHolder, pseudo: Pseudonymizer, clock: Clock, *, max_work: int = DEFAULT_MAX_WORK
    ) -> None:
        self._holder = holder
        self._pseudo = pseudo
        self._clock = clock  # recency is scored at its time
        self._max_work = max_work
        self._described = _Descriptions(holder.current.snapshot)
        compile_search(holder.current.snapshot)

    def FindWarmPaths(
        self, request: warm_paths_pb2.FindWarmPathsRequest, context: grpc.ServicerContext
    ) -> warm_paths_pb2.FindWarmPathsResponse:
        auth = current_auth()
        state = self._holder.current
        snap = state.snapshot
        query, stand_in = self._resolve(snap, auth, request)
        deadline = deadline_of(context)
        if stand_in is None:
            paths = find_paths(snap, query, deadline, self._max_work)
        else:
            find_paths(snap, stand_in, deadline, self._max_work)  # same cost as a real search; answer discarded
            paths = []
        named = (
            frozenset(int(t) for t in query.targets) if request.WhichOneof("target") == "target_email" else frozenset()
        )
        visible = snap.held_mask(query.tenant)[query.targets]
        if paths:
            visible |= np.isin(query.targets, [p.nodes[-1] for p in paths])
        visible_targets = int(np.count_nonzero(visible))
        response = warm_paths_pb2.FindWarmPathsResponse(
            targets=visible_targets,
            snapshot_age_seconds=self._holder.age_seconds(),
            strength_source=snap.strength_source,
        )
        self._add_paths(snap, state.scale, response, paths, query, named)
        return response

    def _add_paths(
        self,
        snap: Snapshot,
        scale: StrengthScale,
        response: warm_paths_pb2.FindWarmPathsResponse,
        paths: list[FoundPath],
        query: PathSearch,
        named: frozenset[int],
    ) -> None:
        """The paths with people as the tenant may see them and each hop's evidence; strengths and
        scores of every hop computed at once, people and evidence described once per snapshot."""
        edges = np.array([e for path in paths for e in path.edges], dtype=np.int64)
        strengths = snap.strength(edges, query.as_of).tolist()
        scored = scale.scores(snap.strength(edges, scale.as_of), query.tenant)
        scores = [-1] * len(edges) if scored is None else scored.tolist()
        described = self._described
        if described.snap is not snap:  # refreshed: describe afresh
            described = self._described = _Descriptions(snap)
        tenant = query.tenant
        i = 0
        for path in paths:
            out = response.paths.add(strength=path.strength)
            out.source.CopyFrom(described.view(tenant, path.nodes[0], path.nodes[0] in named))
            for a, b, edge in zip(path.nodes, path.nodes[1:], path.edges):
                hop = out.hops.add()
                hop.person.CopyFrom(described.view(tenant, b, b in named))
                hop.evidence.CopyFrom(described.evidence(tenant, a, b, edge))
                hop.evidence.strength = strengths[i]
                if scores[i] >= 0:
                    hop.evidence.score, hop.evidence.band = scores[i], _PROTO_BAND[band(scores[i])]
                i += 1
            if out.hops[0].evidence.band:  # scored: the tenant has a scale
                out.score = min(hop.evidence.score for hop in out.hops)
                out.band = _PROTO_BAND[band(out.score)]

    def _resolve(
        self, snap: Snapshot, auth: AuthContext, request: warm_paths_pb2.FindWarmPathsRequest
    ) -> tuple[PathSearch, PathSearch | None]:
        """The search the request asks for, and when its targets resolve to nobody, the stand-in
        search to run instead."""
        violations: list[tuple[str, str]] = []
        k = request.k if request.HasField("k") else DEFAULT_K
        if not 1 <= k <= MAX_K:
            violations.append(("k", f"must be between 1 and {MAX_K}"))
        max_hops = request.max_hops if request.HasField("max_hops") else MAX_HOPS
        if not 1 <= max_hops <= MAX_HOPS:
            violations.append(("max_hops", f"must be between 1 and {MAX_HOPS}"))
        target = request.WhichOneof("target")
        role = request.target_company.role
        target_pid = domain = None
        if target is None:
            violations.append(("target", "set target_email or target_company"))
        elif target == "target_email":
            target_pid = self._pid_or_violation(request.target_email, "target_email", violations)
        else:
            try:
                domain = normalize_domain(request.target_company.domain)
            except RecordError as exc:
                violations.append(("target_company.domain", exc.reason))
            if role.min_title_level not in _TITLE_LEVELS:
                violations.append(("target_company.role.min_title_level", "must be a TitleLevel value (0-5)"))
            if len(role.functions) > len(FUNCTIONS):
                violations.append(("target_company.role.functions", f"at most {len(FUNCTIONS)} functions"))
            else:
                violations += [
                    (f"target_company.role.functions[{i}]", f"must be one of {', '.join(FUNCTIONS)}")
                    for i, function in enumerate(role.functions)
                    if function not in FUNCTIONS
                ]
        rep_pid = team = None
        if request.source.WhichOneof("source") == "rep_email":
            rep_pid = self._pid_or_violation(request.source.rep_email, "source.rep_email", violations)
        elif request.source.WhichOneof("source") == "team":
            team = request.source.team
            if not is_code(team):
                violations.append(("source.team", "must be a team code ([a-z0-9][a-z0-9_.:/+-], at most 64)"))
        if violations:
            raise InvalidRequestError(violations)

        tenant = snap.tenants.index.get(auth.tenant)
        if tenant is None:
            raise NotFoundError("your organisation has no data in the graph yet")
        if auth.max_hops_scope is not None and max_hops > auth.max_hops_scope:
            raise PermissionDeniedError(f"this key is scoped to at most {auth.max_hops_scope} hops")
        if auth.company_scope and domain is not None and domain not in auth.company_scope:
            raise PermissionDeniedError("the target company is outside the companies this key is scoped to")
        targets = self._targets(snap, tenant, target_pid, domain, role)
        if auth.company_scope:  # a person outside the scope is dropped like an unknown one
            scoped = [snap.companies.index[c] for c in auth.company_scope if c in snap.companies.index]
            targets = targets[np.isin(snap.company[targets], scoped)]
        sources = None
        if rep_pid is not None:
            rep = snap.node(rep_pid)
            if rep is None or not snap.member_mask(tenant)[rep]:
                raise InvalidRequestError([("source.rep_email", "is not a member of your organisation")])
            sources = np.array([rep])
        elif team is not None:
            sources = snap.team_members(tenant, team)
            if sources.size == 0:
                raise InvalidRequestError([("source.team", "no member of your organisation is in this team")])
        search = PathSearch(
            tenant=tenant,
            targets=targets,
            sources=sources,
            k=k,
            max_hops=max_hops,
            allow_cross_tenant=request.allow_cross_tenant,
            as_of=self._clock.now(),
        )
        if targets.size:
            return search, None
        # A person or company of the snapshot picked from the request's own target stands in.
        if target_pid is not None:
            stand_in = (
                self._targets(snap, tenant, snap.pid(_pick(target_pid, snap.people)), None, role)
                if snap.people
                else targets
            )
        else:
            cids = snap.companies.cids
            stand_in = (
                self._targets(snap, tenant, None, cids[_pick(domain or "", len(cids))], role) if cids else targets
            )
        return search, replace(search, targets=stand_in)

    def _pid_or_violation(self, email: str, field: str, violations: list[tuple[str, str]]) -> str | None:
        try:
            return self._pseudo.pid(email)
        except RecordError as exc:
            violations.append((field, exc.reason))
            return None

    @staticmethod
    def _targets(
        snap: Snapshot, tenant: int, pid: str | None, domain: str | None, role: warm_paths_pb2.RoleFilter
    ) -> np.ndarray:
        """People the request aims at (unknown people or companies give none, not an error)."""
        if pid is not None:
            node = snap.node(pid)
            return np.array([] if node is None else [node], dtype=np.int32)
        company = snap.companies.index.get(domain or "")
        if company is None:
            return np.zeros(0, dtype=np.int32)
        people = snap.people_at(company)
        if role.min_title_level:
            people = people[snap.level[people] >= role.min_title_level - 1]
        if role.functions:
            people = people[np.isin(snap.function[people], [FUNCTIONS.index(f) for f in role.functions])]
        if role.economic_buyer:
            by_title = np.isin(snap.level[people], _ECONOMIC_LEVELS) & np.isin(
                snap.function[people], _ECONOMIC_FUNCTIONS
            )
            named = np.isin(people, snap.economic_buyers.get((tenant, company), np.zeros(0, dtype=np.int32)))
            people = people[by_title | named]
        return people.astype(np.int32)

    def ResolvePeople(
        self, request: warm_paths_pb2.ResolvePeopleRequest, context: grpc.ServicerContext
    ) -> warm_paths_pb2.ResolvePeopleResponse:
        if len(request.emails) > MAX_RESOLVE:
            raise InvalidRequestError([("emails", f"at most {MAX_RESOLVE} per call")])
        auth = current_auth()
        snap = self._holder.current.snapshot
        tenant = snap.tenants.index.get(auth.tenant)
        response = warm_paths_pb2.ResolvePeopleResponse()
        violations: list[tuple[str, str]] = []
        for i, email in enumerate(request.emails):
            pid = self._pid_or_violation(email, f"emails[{i}]", violations)
            node = snap.node(pid) if pid else None
            if tenant is not None and node is not None and snap.held_by(node, tenant):
                response.people.add(email=email, pid=pid)
        if violations:
            raise InvalidRequestError(violations)
        return response
