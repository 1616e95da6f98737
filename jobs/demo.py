"""`relgraph demo`: the main job end to end on one machine. Starts the managed Neo4j (unless
NEO4J_URI points elsewhere), generates a small multi-tenant network, ingests it, and prints what
was built, read back from Neo4j."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

from graph.ingest import ingest
from graph.neo4j_server import ManagedNeo4j
from graph.operations import deals_by_crm_stage, stats, strongest_ties
from graph.pseudonymize import Pseudonymizer
from graph.schema import current_version, migrate
from graph.store import connect
from jobs.generate import GeneratorConfig, generate
from relgraph.config import Config


def _section(title: str) -> None:
    print(f"\n== {title} ==")


def run_demo(config: Config, *, people: int, tenants: int, seed: int, key: str) -> int:
    _section("Neo4j")
    if config.uses_managed_neo4j:
        status = ManagedNeo4j(config).start()
        print(f"managed Neo4j {status.version} on {status.uri} (loopback only, auth on), home {status.home}")
    else:
        print(f"using NEO4J_URI={config.neo4j.uri}")
    with connect(config) as store:
        migrate(store)
        print(f"schema version {current_version(store)}")

        _section(f"generate: {people} people, {tenants} tenants, seed {seed}")
        out = config.home / "demo"
        shutil.rmtree(out, ignore_errors=True)
        report = generate(GeneratorConfig(people=people, tenants=tenants, seed=seed), out)
        print(f"{report.seconds} s into {out}")
        for name, n in report.counts.items():
            print(f"  {name:<26} {n:>8}")

        _section("ingest (pseudonymized at the edge; re-running the demo changes nothing)")
        summary = ingest(store, [out / "ingest"], Pseudonymizer(key), batch_size=config.ingest.batch_size)
        print(f"{summary.accepted} records accepted, {summary.rejected} rejected; {summary.nodes_created} nodes and "
              f"{summary.relationships_created} relationships created; {summary.events_added} events added "
              f"({summary.events_already_present} already present); {summary.seconds} s, {summary.events_per_s:.0f} events/s")

        _section("graph in Neo4j")
        result = stats(store)
        print("nodes:         " + ", ".join(f"{k} {v}" for k, v in result.nodes.items()))
        print("relationships: " + ", ".join(f"{k} {v}" for k, v in result.relationships.items()))
        for tenant, counts in result.tenants.items():
            print(f"  {tenant:<16} members {counts.get('members', 0):>5}, deals {counts.get('Deal', 0):>4}, "
                  f"KNOWS {counts.get('KNOWS', 0):>6}, signals {counts.get('Signal', 0):>3}")

        tenant = next(iter(result.tenants))
        _section(f"tenant {tenant}: strongest ties (pseudonymous ids; no email or name is stored)")
        for tie in strongest_ties(store, tenant):
            last = datetime.fromtimestamp(tie["last_ts"], timezone.utc).date()
            print(f"  {tie['a'][:10]}… ↔ {tie['b'][:10]}…  {tie['count']:>3} interactions, "
                  f"{tie['two_way']:>3} two-way, last {last}")
        _section(f"tenant {tenant}: deals by CRM-reported stage")
        for row in deals_by_crm_stage(store, tenant):
            print(f"  {row['outcome']:<5} {row['crm_stage'] or '-':<12} {row['deals']:>4} deals, {row['amount']:>12,.0f}")
    print("\nGround truth (true stages, outcomes, planted ties and signals) is in", out / "ground_truth")
    return 0
