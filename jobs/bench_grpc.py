"""`relgraph bench grpc`: the real server measured the way a peer would measure it.

A generated network is ingested into a throwaway Neo4j, a link, a deal and a buyer model are
trained and promoted, and `relgraph serve`'s server answers on a real port while an out-of-process load
generator drives it: ghz (a Go gRPC load tool, built once from the Go module proxy into the cache,
like helm), or, only where Go is absent, the project's Python client in as many processes (said in
the report). Each call runs for the same time at the same concurrency; the health check measures
the gRPC stack's own ceiling, and every call is reported as a fraction of it. Each call is then
driven alone (one stream) for half as long: its latency with nothing queued before it (under 8
streams, a call's p50 is at least 8 over the requests per second, whatever it costs)."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from core.config import Config, RateLimit
from core.errors import ConfigError
from core.vocabulary import parse_time
from gnn.registry import ModelRegistry
from graph.ingest import ingest
from graph.interaction_log import ExportScope
from graph.neo4j_reader import Neo4jReader
from graph.pseudonymize import Pseudonymizer
from graph.reader import ALL_TENANTS
from jobs.bench_common import BenchGraph, free_port, generated_graph
from jobs.generate import AS_OF, GeneratorConfig
from jobs.train_buyer import train_buyer_model
from jobs.train_deals import DealSettings, train_deal_model
from jobs.train_link import LinkSettings, train_link_model
from relgraph.v1 import buyer_intelligence_pb2, warm_paths_pb2
from server.app import create_server
from server.auth import create_api_key
from server.state import ServingStateHolder

GHZ_VERSION = "v0.120.0"
_GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
_PEPPER = "bench-pepper-0123456789"
_TARGETS = 500  # distinct requests per call, sent round robin
_REFRESH_EVERY = 100  # one interaction in this many happens again before the refresh is timed


@dataclass(frozen=True)
class Call:
    """One RPC under load: its full method name and the requests sent round robin (as JSON)."""

    label: str
    method: str  # "package.Service/Method"
    request_type: type[Message]
    requests: list[dict[str, Any]]
    key: str | None = None  # API key sent as a Bearer token


def ghz_binary(cache: Path) -> Path | None:
    """ghz, built once into `cache`/bin through the Go module proxy; None where Go is absent."""
    binary = cache / "bin" / f"ghz-{GHZ_VERSION}"
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        return None
    print(f"[bench] installing ghz {GHZ_VERSION} (first run only, about a minute)", flush=True)
    with tempfile.TemporaryDirectory(prefix="relgraph-ghz-") as gobin:
        done = subprocess.run(
            ["go", "install", f"{_GHZ_MODULE}@{GHZ_VERSION}"],
            env={**os.environ, "GOBIN": gobin},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise ConfigError(f"could not build ghz {GHZ_VERSION} with Go: {done.stderr.strip()[-500:]}")
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(gobin) / "ghz", binary)
    return binary


def run_grpc_benchmark(
    config: Config,
    *,
    people: int,
    seconds: float,
    concurrency: int,
    network_key: str,
    settings: DealSettings,
    soak_minutes: float = 0.0,
    seed: int = 7,
    tenants: int = 5,
) -> dict[str, Any]:
    ghz = ghz_binary(config.cache)
    generator = GeneratorConfig(people=people, tenants=tenants, seed=seed, deals_per_100_people=20)
    with generated_graph(config, generator, Pseudonymizer(network_key)) as graph:
        _promote_models(graph, settings)
        server_config = dataclasses.replace(
            graph.config,
            network_key=network_key,
            api_key_pepper=_PEPPER,
            server=dataclasses.replace(
                config.server,
                port=free_port(),
                metrics_port=0,
                as_of=AS_OF,
                member_rate=RateLimit(per_second=1e9, burst=10**9),  # measure the server, not the limiter
            ),
        )
        server, port = create_server(server_config)
        server.start()
        address = f"127.0.0.1:{port}"
        try:
            calls = _calls(graph, seed)
            snap = server.holder.current.snapshot
            strength_source = snap.strength_source
            snapshot = {
                "people": snap.people,
                "relationships": snap.relationships,
                "bytes_per_relationship": round(snap.total_bytes / max(1, snap.relationships), 1),
            }
            process = psutil.Process()
            _drive(ghz, address, calls[1], min(3.0, seconds), concurrency)  # warm-up
            rss_before = process.memory_info().rss
            results = {call.label: _drive(ghz, address, call, seconds, concurrency) for call in calls}
            rss_after = process.memory_info().rss
            for call in calls:  # the latency of a call alone: one stream, nothing queued before it
                alone = _drive(ghz, address, call, seconds / 2, 1)
                results[call.label] |= {"alone_p50_ms": alone["p50_ms"], "alone_p99_ms": alone["p99_ms"]}
            soak = _soak(ghz, address, calls[1], results[calls[1].label], soak_minutes, concurrency, process)
            refresh = _refresh_cost(graph, server.holder, Pseudonymizer(network_key))
        finally:
            server.stop()
    ceiling = results[calls[0].label]["requests_per_s"] or 1.0
    for result in results.values():
        result["fraction_of_ceiling"] = round(result["requests_per_s"] / ceiling, 3)
    return {
        "people": people,
        "tenants": tenants,
        "seconds": seconds,
        "concurrency": concurrency,
        "load_generator": f"ghz {GHZ_VERSION}" if ghz else "python client (Go is absent, so ghz could not be built)",
        "cores": len(os.sched_getaffinity(0)),
        "strength_source": strength_source,
        "snapshot": snapshot,
        "calls": results,
        "server_rss_mb_before": round(rss_before / 2**20, 1),
        "server_rss_mb_after": round(rss_after / 2**20, 1),
        "refresh": refresh,
        **({"soak": soak} if soak else {}),
        "note": "the load generator shares the machine's cores with the server",
    }


def _promote_models(graph: BenchGraph, settings: DealSettings) -> None:
    """A link model (its strengths rank warm paths, and a refresh re-scores what changed), a deal and
    a buyer model (they answer the deal RPCs), trained on the network with `settings`' epochs and promoted."""
    import ray

    registry = ModelRegistry(graph.config.models_dir)
    reader = Neo4jReader(graph.store)
    log = reader.interaction_log(ExportScope(tenants=ALL_TENANTS, end=AS_OF))
    link = train_link_model(
        log, LinkSettings(run=settings.run), runs_dir=graph.config.runs_dir, registry=registry, scope={"bench": "grpc"}
    )
    assert link.version is not None
    registry.promote("link", link.version.name)
    data = reader.deal_bundle(ALL_TENANTS)
    report = train_deal_model(
        data, settings, as_of=AS_OF, runs_dir=graph.config.runs_dir, registry=registry, scope={"bench": "grpc"}
    )
    assert report.version is not None
    registry.promote("deal", report.version.name)
    registry.promote("buyer", train_buyer_model(data, as_of=AS_OF, registry=registry, scope={"bench": "grpc"}).name)
    ray.shutdown()


def _calls(graph: BenchGraph, seed: int) -> list[Call]:
    """The health check (first: the ceiling), then every read RPC with requests from the network:
    warm paths for the largest and the smallest tenant to people and companies, and the deal RPCs
    on the largest tenant's open deals and accounts."""
    ingest = graph.data / "ingest"
    members: dict[str, int] = {}
    for record in _records(ingest / "members.jsonl"):
        members[record["tenant"]] = members.get(record["tenant"], 0) + 1
    largest, smallest = max(members, key=members.__getitem__), min(members, key=members.__getitem__)
    keys = {
        t: create_api_key(graph.store, _PEPPER, tenant=t, role="member", scopes=[], label="bench")[0]
        for t in (largest, smallest)
    }
    rng = random.Random(seed)
    jobs = list(_records(ingest / "employment.jsonl"))
    people = _sample(rng, {j["email"] for j in jobs})
    companies = _sample(rng, {j["company"] for j in jobs})
    deals = [d for d in _records(ingest / "deals.jsonl") if d["tenant"] == largest]
    open_deals = [d["id"] for d in deals if d.get("outcome", "open") == "open"][:_TARGETS]
    accounts = sorted({d["account"] for d in deals})[:_TARGETS]

    def warm(label: str, tenant: str, requests: list[dict[str, Any]]) -> Call:
        find = "relgraph.v1.WarmPathsService/FindWarmPaths"
        return Call(label, find, warm_paths_pb2.FindWarmPathsRequest, requests, keys[tenant])

    def deal(label: str, method: str, request_type: type[Message], requests: list[dict[str, Any]]) -> Call:
        return Call(label, f"relgraph.v1.BuyerIntelligenceService/{method}", request_type, requests, keys[largest])

    by_deal = [{"dealId": d} for d in open_deals]
    return [
        Call("Health/Check (the ceiling)", "grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest, [{}]),
        warm(
            f"FindWarmPaths, largest tenant ({members[largest]} members), person",
            largest,
            [{"targetEmail": p, "allowCrossTenant": True} for p in people],
        ),
        warm(
            f"FindWarmPaths, largest tenant ({members[largest]} members), company",
            largest,
            [{"targetCompany": {"domain": c}, "allowCrossTenant": True} for c in companies],
        ),
        warm(
            f"FindWarmPaths, smallest tenant ({members[smallest]} members), person",
            smallest,
            [{"targetEmail": p, "allowCrossTenant": True} for p in people],
        ),
        deal("EstimateDealStage", "EstimateDealStage", buyer_intelligence_pb2.EstimateDealStageRequest, by_deal),
        deal("ListDealSignals", "ListDealSignals", buyer_intelligence_pb2.ListDealSignalsRequest, by_deal),
        deal(
            "PredictBuyerProcess",
            "PredictBuyerProcess",
            buyer_intelligence_pb2.PredictBuyerProcessRequest,
            [{"cohort": {"industry": "software"}, "profile": {"amount": 20000}}]
            + [{"companyDomain": a} for a in accounts],
        ),
    ]


def _sample(rng: random.Random, items: set[str]) -> list[str]:
    return rng.sample(sorted(items), min(_TARGETS, len(items)))


def _refresh_cost(graph: BenchGraph, holder: ServingStateHolder, pseudo: Pseudonymizer) -> dict[str, Any]:
    """Seconds of the serving state's refresh after 1% of the interactions happen again (new events
    between the same people, a second later), against a full build of the same state."""
    interactions = (graph.data / "ingest" / "interactions.jsonl").read_text().splitlines()
    again = [json.loads(line) for line in interactions[::_REFRESH_EVERY]]
    with tempfile.TemporaryDirectory(prefix="relgraph-bench-change-") as tmp:
        change = Path(tmp) / "interactions.jsonl"
        moved = [{**r, "id": f"{r['id']}-again", "ts": parse_time(r["ts"]) + 1} for r in again]
        change.write_text("".join(json.dumps(r) + "\n" for r in moved))
        ingest(graph.store, [change], pseudo, progress=False)
    began = time.perf_counter()
    holder.refresh()
    incremental = time.perf_counter() - began
    began = time.perf_counter()
    holder.refresh(full=True)
    full = time.perf_counter() - began
    return {
        "changed_interactions": len(again),
        "of_interactions": len(interactions),
        "incremental_s": round(incremental, 3),
        "full_build_s": round(full, 3),
        "incremental_of_full": round(incremental / full, 3),
    }


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _drive(ghz: Path | None, address: str, call: Call, seconds: float, concurrency: int) -> dict[str, Any]:
    if ghz is None:
        return _python_client(address, call, seconds, concurrency)
    return _ghz(ghz, address, call, seconds, concurrency)


_SOAK_LOAD = 0.8  # of the call's measured maximum


def _soak(
    ghz: Path | None,
    address: str,
    call: Call,
    measured: dict[str, Any],
    minutes: float,
    concurrency: int,
    server: psutil.Process,
) -> dict[str, Any] | None:
    """`call` driven at 80% of its measured maximum for `minutes`, the server's RSS sampled every
    10 s: errors, latency and how far the RSS moved. Needs ghz (the Python client sets no rate)."""
    if minutes <= 0 or ghz is None:
        return None
    rps = _SOAK_LOAD * measured["requests_per_s"]
    result: dict[str, Any] = {}
    driver = threading.Thread(
        target=lambda: result.update(_ghz(ghz, address, call, minutes * 60, concurrency, rps=rps)), daemon=True
    )
    rss = [server.memory_info().rss]
    driver.start()
    while driver.is_alive():
        driver.join(timeout=10)
        rss.append(server.memory_info().rss)
    mib = [round(r / 2**20, 1) for r in rss]
    return {
        "call": call.label,
        "minutes": minutes,
        "target_requests_per_s": round(rps, 1),
        **result,
        "rss_mib": {"first": mib[0], "min": min(mib), "max": max(mib), "last": mib[-1], "samples": len(mib)},
        "rss_spread": round((max(mib) - min(mib)) / mib[0], 3),
    }


def _protoset(request_type: type[Message]) -> bytes:
    """The compiled descriptors of the request's file and every file it imports, as ghz reads them."""
    files = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        file.CopyToProto(files.file.add())

    add(request_type.DESCRIPTOR.file)
    serialized: bytes = files.SerializeToString()
    return serialized


def _ghz(
    ghz: Path, address: str, call: Call, seconds: float, concurrency: int, rps: float | None = None
) -> dict[str, Any]:
    with (
        tempfile.NamedTemporaryFile("w", suffix=".json") as data,
        tempfile.NamedTemporaryFile("wb", suffix=".protoset") as protoset,
    ):
        json.dump(call.requests, data)  # an array: ghz sends its elements round robin
        data.flush()
        protoset.write(_protoset(call.request_type))
        protoset.flush()
        command = [
            str(ghz),
            "--insecure",
            "--protoset",
            protoset.name,
            "--call",
            call.method,
            "--data-file",
            data.name,
            "--duration",
            f"{seconds}s",
            "--duration-stop",
            "wait",  # requests in flight at the end finish and count, instead of failing as cut off
            "--concurrency",
            str(concurrency),
            "--format",
            "json",
        ]
        if call.key:
            command += ["--metadata", json.dumps({"authorization": f"Bearer {call.key}"})]
        if rps is not None:
            command += ["--rps", str(max(1, round(rps)))]
        done = subprocess.run([*command, address], capture_output=True, text=True)
    if done.returncode != 0 and not done.stdout.strip():
        raise ConfigError(f"ghz failed on {call.method}: {done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout)
    latency_ms = {p["percentage"]: p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
    count = int(report["count"])
    ok = int((report.get("statusCodeDistribution") or {}).get("OK", 0))
    return {
        "requests": count,
        "errors": count - ok,
        "error_kinds": report.get("errorDistribution") or {},
        "requests_per_s": round(ok / seconds, 1),
        "p50_ms": round(latency_ms.get(50, 0.0), 2),
        "p99_ms": round(latency_ms.get(99, 0.0), 2),
    }


def _python_client(address: str, call: Call, seconds: float, concurrency: int) -> dict[str, Any]:
    requests = [json_format.ParseDict(r, call.request_type()).SerializeToString() for r in call.requests]
    start_at = time.time() + 8.0  # client processes start and import before the timed window opens
    with multiprocessing.get_context("spawn").Pool(concurrency) as pool:
        results = pool.starmap(
            _client_process,
            [(address, call.method, call.key, requests, start_at, start_at + seconds, i) for i in range(concurrency)],
        )
    latencies = sorted(s for done, _ in results for s in done)
    errors = sum(e for _, e in results)

    def quantile(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2) if latencies else 0.0

    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "error_kinds": {},
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
    }


def _client_process(
    address: str, method: str, key: str | None, requests: list[bytes], start_at: float, deadline: float, offset: int
) -> tuple[list[float], int]:
    """One client process: the call in a loop from `start_at` until `deadline` (wall clock)."""
    import grpc

    latencies: list[float] = []
    errors = 0
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    with grpc.insecure_channel(address) as channel:
        rpc = channel.unary_unary(f"/{method}", request_serializer=bytes, response_deserializer=bytes)
        time.sleep(max(0.0, start_at - time.time()))
        i = offset
        while time.time() < deadline:
            began = time.perf_counter()
            try:
                rpc(requests[i % len(requests)], metadata=metadata, timeout=10)
                latencies.append(time.perf_counter() - began)
            except grpc.RpcError:
                errors += 1
            i += 1
    return latencies, errors


def render_grpc_benchmark(r: dict[str, Any]) -> str:
    lines = [
        f"relgraph serve at {r['people']:,} people ({r['tenants']} tenants), {r['load_generator']}, "
        f"{r['concurrency']} concurrent streams for {r['seconds']:g} s per call, {r['cores']} cores "
        f"(shared with the load generator); strengths: {r['strength_source']}",
        f"{'call':<58} {'req/s':>8} {'of ceiling':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
        f" {'alone: p50':>10} {'p99 ms':>7}",
    ]
    for label, c in r["calls"].items():
        lines.append(
            f"{label:<58} {c['requests_per_s']:>8.1f} {c['fraction_of_ceiling']:>10.0%} "
            f"{c['p50_ms']:>8.2f} {c['p99_ms']:>8.2f} {c['errors']:>7} "
            f"{c['alone_p50_ms']:>10.2f} {c['alone_p99_ms']:>7.2f}"
        )
    lines.append(f"server RSS {r['server_rss_mb_before']} MiB before the load, {r['server_rss_mb_after']} MiB after")
    s = r["snapshot"]
    lines.append(
        f"snapshot: {s['people']:,} people, {s['relationships']:,} relationships, "
        f"{s['bytes_per_relationship']} bytes per relationship (every array)"
    )
    f = r["refresh"]
    lines.append(
        f"refresh after {f['changed_interactions']:,} of {f['of_interactions']:,} interactions happened again: "
        f"{f['incremental_s']} s, against {f['full_build_s']} s for a full build ({f['incremental_of_full']:.1%})"
    )
    if "soak" in r:
        k, m = r["soak"], r["soak"]["rss_mib"]
        lines.append(
            f"soak: {k['call']} at {k['target_requests_per_s']} requests/s (80% of its maximum) for "
            f"{k['minutes']:g} min: {k['requests']:,} requests, {k['errors']} errors, p50 {k['p50_ms']} ms, "
            f"p99 {k['p99_ms']} ms; server RSS {m['first']} -> {m['last']} MiB (range {m['min']}-{m['max']}, "
            f"{k['rss_spread']:.1%} of the first)"
        )
    return "\n".join(lines)
