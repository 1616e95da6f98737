"""The `relgraph` command line: Neo4j lifecycle, ingest, erase, stats, operator Cypher, the
generator, training, evaluation and the model registry, benchmarks and the demo. Errors print one
clear line and exit non-zero."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.clock import clock_at
from core.config import Config, load_config
from core.errors import ConfigError, RelgraphError
from core.secrets import api_key_pepper, network_key
from core.vocabulary import parse_time


def _emit(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    print(to_json(data) if as_json else render(data))


def to_json(data: Any) -> str:
    """Strict JSON: a number JSON cannot carry (NaN, infinity) becomes null."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(data), indent=2, default=str, allow_nan=False)


def _open_store(config: Config) -> Any:
    from graph.schema import migrate
    from graph.store import connect

    store = connect(config)
    store.verify()
    migrate(store)
    return store


# -- commands ----------------------------------------------------------------------------------


def cmd_neo4j(args: argparse.Namespace, config: Config) -> int:
    from graph.neo4j_server import ManagedNeo4j

    if config.neo4j.uri is not None and args.action != "install":
        raise ConfigError(f"NEO4J_URI={config.neo4j.uri} is set: relgraph uses that server and manages none")
    server = ManagedNeo4j(config)
    if args.action == "install":
        lib = server.install()
        print(f"Neo4j runtime ready in {lib}")
        return 0
    if args.action == "start":
        status = server.start()
        print(f"Neo4j {status.version} running on {status.uri} (pid {status.pid}, home {status.home})")
        return 0
    if args.action == "stop":
        print("Neo4j stopped" if server.stop() else "Neo4j was not running")
        return 0
    status = server.status()
    _emit(
        status.to_dict(),
        args.json,
        lambda s: (
            f"Neo4j {s['version']}: {'running' if s['running'] else 'stopped'}"
            f" on {s['uri']}"
            + (f" (pid {s['pid']}, bolt {'answers' if s['bolt_answers'] else 'silent'})" if s["running"] else "")
        ),
    )
    return 0 if status.running else 3


def cmd_ingest(args: argparse.Namespace, config: Config) -> int:
    from graph.bulk_load import bulk_ingest, prefers_initial
    from graph.ingest import ingest
    from graph.pseudonymize import Pseudonymizer

    pseudo = Pseudonymizer(network_key(config))
    initial = args.initial
    if initial is None and config.uses_managed_neo4j:
        with _open_store(config) as store:
            initial = prefers_initial(config, store, args.paths)
        if initial:
            print(
                f"the managed database is empty and the input holds at least {config.ingest.initial_auto_mb:g} MB: "
                "loading it in bulk with neo4j-admin import (--no-initial writes through transactions)",
                file=sys.stderr,
            )
    if initial:
        summary = bulk_ingest(config, args.paths, pseudo, strict=args.strict)
    else:
        with _open_store(config) as store:
            summary = ingest(
                store, args.paths, pseudo, strict=args.strict, batch_size=args.batch_size or config.ingest.batch_size
            )
    _emit(summary.to_dict(), args.json, _render_ingest)
    return 0 if summary.rejected == 0 else 2


def _render_ingest(s: dict[str, Any]) -> str:
    lines = [
        f"read {s['records_read']} records from {s['files']} file(s): {s['accepted']} accepted, "
        f"{s['rejected']} rejected"
        + (f" ({s['files_rejected']} file(s) refused whole: strict mode)" if s["files_rejected"] else ""),
        f"created {s['nodes_created']} nodes and {s['relationships_created']} relationships "
        f"({s['events_added']} events added, {s['events_already_present']} already present) in {s['seconds']} s, "
        f"{s['events_per_s']:.0f} events/s",
    ]
    if s["mode"] == "initial":
        lines.append("bulk initial load: " + ", ".join(f"{k} {v} s" for k, v in s["phase_seconds"].items()))
    lines += [f"skipped {why}" for why in s["skipped"]]
    lines += [f"  {e['file']}:{e['line']}: {e['reason']}" for e in s["first_errors"]]
    return "\n".join(lines)


def cmd_erase(args: argparse.Namespace, config: Config) -> int:
    from graph.export_cache import purge_export_cache
    from graph.operations import NETWORK, erase_person
    from graph.pseudonymize import Pseudonymizer

    if args.network == bool(args.tenant):
        raise ConfigError(
            "say whose data to erase: --tenant T (what that tenant holds) or --network (everything, "
            "a network operator's action)"
        )
    pid = Pseudonymizer(network_key(config)).pid(args.email)
    scope = NETWORK if args.network else _tenant_id(args.tenant)
    with _open_store(config) as store:
        report = erase_person(
            store,
            pid,
            scope=scope,
            actor=f"cli:{os.environ.get('USER') or 'operator'}",
            retention_s=config.server.erasure_retention_s,
        )
    if report.found:
        purge_export_cache(config.export_cache_dir)
    where = "the whole network" if args.network else f"tenant {args.tenant}"
    _emit(
        report.to_dict(),
        args.json,
        lambda r: (
            f"erased person {r['pid']} from {where}: {r['nodes_deleted']} nodes, {r['activities_deleted']} events they "
            f"took part in and {r['relationships_deleted']} relationships (audit record {r['erasure_id']}); running "
            "servers drop them at their next refresh"
            if r["found"]
            else f"nothing to erase: {where} holds no such person"
        ),
    )
    return 0


def _tenant_id(value: str) -> str:
    from core.vocabulary import is_tenant_id

    if not is_tenant_id(value):
        raise ConfigError(f"{value[:40]!r} is not a tenant id (lower-case letters, digits, _ and -, at most 64)")
    return value


def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    from graph.operations import stats

    with _open_store(config) as store:
        result = stats(store, args.tenant)
    _emit(result.to_dict(), args.json, _render_stats)
    return 0


def _render_stats(s: dict[str, Any]) -> str:
    lines = []
    if s["nodes"]:
        lines.append("nodes:         " + ", ".join(f"{k} {v}" for k, v in s["nodes"].items()))
        lines.append("relationships: " + ", ".join(f"{k} {v}" for k, v in s["relationships"].items()))
    for tenant, counts in s["tenants"].items():
        lines.append(f"tenant {tenant}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)


def cmd_cypher(args: argparse.Namespace, config: Config) -> int:
    try:
        params = json.loads(args.params) if args.params else None
    except ValueError as exc:
        raise ConfigError(f"--params must be a JSON object: {exc}") from exc
    if params is not None and not isinstance(params, dict):
        raise ConfigError("--params must be a JSON object")
    with _open_store(config) as store:
        keys, rows, truncated = store.read_only(args.query, params, timeout_s=config.neo4j.operator_query_timeout_s)
    if args.json:
        print(to_json(rows))
    else:
        print("\t".join(keys))
        for row in rows:
            print("\t".join(str(row[k]) for k in keys))
    if truncated:
        print(f"relgraph: only the first {len(rows)} rows are shown", file=sys.stderr)
    return 0


def cmd_generate(args: argparse.Namespace, config: Config) -> int:
    from jobs.generate import GeneratorConfig, generate

    try:
        report = generate(
            GeneratorConfig(
                people=args.people,
                tenants=args.tenants,
                seed=args.seed,
                hygiene=args.hygiene,
                deals_per_100_people=args.deals_per_100_people,
                relationships_per_person=args.relationships_per_person,
            ),
            args.out,
            progress=sys.stderr.isatty(),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    _emit(
        report.__dict__,
        args.json,
        lambda r: (
            f"generated {r['config']['people']} people in {r['seconds']} s into "
            f"{r['out']}: " + ", ".join(f"{k} {v}" for k, v in r["counts"].items())
        ),
    )
    return 0


def cmd_bench(args: argparse.Namespace, config: Config) -> int:
    key = network_key(config, create_local=True)
    result: dict[str, Any]
    if args.what == "ingest":
        from jobs.bench_ingest import run_ingest_benchmark

        result = run_ingest_benchmark(
            config, people=args.people, baseline_events=args.baseline_events, network_key=key, initial=args.initial
        )
    elif args.what == "warm-paths":
        from jobs.bench_serving import run_warm_paths_benchmark

        result = run_warm_paths_benchmark(
            config,
            people=args.people,
            queries=args.queries,
            cypher_queries=args.cypher_queries,
            network_key=key,
            relationships_per_person=args.relationships_per_person,
            initial=args.initial,
        )
    elif args.what == "train":
        from jobs.bench_train import run_train_benchmark
        from jobs.train_link import LinkSettings

        result = run_train_benchmark(
            config,
            people=args.people,
            workers=_worker_counts(args.workers),
            epochs=args.epochs or LinkSettings().run.epochs,
            network_key=key,
        )
    elif args.what == "deals":
        from jobs.bench_deals import render_deals_benchmark, run_deals_benchmark

        result = run_deals_benchmark(
            config,
            people=args.people,
            hygiene=_hygiene_levels(args.hygiene),
            network_key=key,
            settings=_bench_deal_settings(args),
            requests=args.requests,
            plot=args.plot,
        )
        _emit(result, args.json, render_deals_benchmark)
        return 0
    elif args.what == "forecast":
        from jobs.bench_forecast import render_forecast_benchmark, run_forecast_benchmark

        result = run_forecast_benchmark(
            config,
            people=args.people,
            hygiene=_hygiene_levels(args.hygiene),
            network_key=key,
            settings=_bench_deal_settings(args),
            period=args.period,
            periods=args.periods,
        )
        _emit(result, args.json, render_forecast_benchmark)
        return 0
    else:
        from jobs.bench_grpc import render_grpc_benchmark, run_grpc_benchmark

        result = run_grpc_benchmark(
            config,
            people=args.people,
            seconds=args.seconds,
            concurrency=args.concurrency,
            network_key=key,
            settings=_bench_deal_settings(args),
            soak_minutes=args.soak_minutes,
        )
        _emit(result, args.json, render_grpc_benchmark)
        return 0
    _emit(result, args.json, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))
    return 0


def _bench_deal_settings(args: argparse.Namespace) -> Any:
    """The deal model's default settings, with `--epochs` when given."""
    from jobs.train_deals import DealSettings

    settings = DealSettings()
    if args.epochs:
        settings = dataclasses.replace(settings, run=dataclasses.replace(settings.run, epochs=args.epochs))
    return settings


def _hygiene_levels(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or not all(0.0 <= x <= 1.0 for x in levels):
        raise ConfigError(f"--hygiene {text!r}: give levels between 0 and 1 like 0.2,0.4,0.6,0.8,1.0")
    return levels


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ConfigError(f"--workers {text!r}: give worker counts like 1,2")
    return counts


def _run_settings(args: argparse.Namespace, default: Any) -> Any:
    """A kind's default run settings with what the command line sets."""
    overrides = {
        k: v for k, v in (("workers", args.workers), ("epochs", args.epochs), ("seed", args.seed)) if v is not None
    }
    return dataclasses.replace(default, **overrides)


def _link_settings(args: argparse.Namespace) -> Any:
    from gnn.linkpred import LinkTask
    from jobs.train_link import LinkSettings

    task = LinkTask(horizon_days=args.horizon_days) if args.horizon_days else LinkTask()
    return LinkSettings(run=_run_settings(args, LinkSettings().run), task=task)


def _deal_settings(args: argparse.Namespace) -> Any:
    from jobs.train_deals import DealSettings

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip()) if args.stages else DealSettings().stages
    return DealSettings(run=_run_settings(args, DealSettings().run), stages=stages)


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    from gnn.buyer_process import CohortMinimum
    from gnn.registry import ModelRegistry
    from graph.neo4j_reader import Neo4jReader
    from jobs.promotion import promote_through_gate
    from jobs.trainers import TRAINERS, TrainingRequest

    registry = ModelRegistry(config.models_dir)
    kinds = list(TRAINERS) if args.model == "all" else [args.model]
    with _open_store(config) as store:
        request = TrainingRequest(
            reader=Neo4jReader(store, progress=sys.stderr.isatty()),
            registry=registry,
            runs_dir=config.runs_dir,
            cache_dir=config.export_cache_dir,
            tenant=_tenant_id(args.tenant) if args.tenant else None,
            since=args.since,
            until=args.until,
            link=_link_settings(args),
            deal=_deal_settings(args),
            cohort_minimum=CohortMinimum(config.server.min_cohort_deals, config.server.min_cohort_tenants),
            resume=args.resume,
            progress=sys.stderr.isatty(),
            tracking_store=config.tracking_store if args.track else None,
        )
        results = {kind: TRAINERS[kind].run(request) for kind in kinds}
    for report in results.values():
        _say_tracked(report.get("tracked"))
    if args.promote:
        for kind, report in results.items():
            print(promote_through_gate(registry, kind, report["version"]), file=sys.stderr)
    if args.model == "all":
        _emit(results, args.json, lambda r: "\n\n".join(TRAINERS[kind].render(r[kind]) for kind in r))
    else:
        _emit(results[args.model], args.json, TRAINERS[args.model].render)
    return 0


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    import torch

    from gnn.features import graph_at
    from graph.export_cache import cached_interaction_log
    from graph.interaction_log import ExportScope
    from graph.neo4j_reader import Neo4jReader
    from graph.reader import ALL_TENANTS, TenantScope

    tenants = TenantScope.of(_tenant_id(args.tenant)) if args.tenant else ALL_TENANTS
    scope = ExportScope(tenants=tenants, start=args.since, end=args.until)
    with _open_store(config) as store:
        log = cached_interaction_log(Neo4jReader(store, progress=sys.stderr.isatty()), scope, config.export_cache_dir)
    at = args.at if args.at is not None else (args.until if args.until is not None else int(time.time()))
    data = graph_at(log, at).to_hetero_data()
    torch.save({"data": data, "pids": log.pids.tolist(), "at": at, "scope": scope.to_dict()}, args.out)
    _emit(
        {
            "out": str(args.out),
            "at": at,
            "people": log.people,
            "interactions": log.interactions,
            "edges": {"/".join(k): int(data[k].edge_index.shape[1]) for k in data.edge_types},
        },
        args.json,
        lambda r: (
            f"{r['out']}: HeteroData at {r['at']} ({r['people']} people; "
            + ", ".join(f"{k} {v}" for k, v in r["edges"].items())
            + ")"
        ),
    )
    return 0


def _as_of(args: argparse.Namespace, config: Config) -> int:
    """--as-of, else the configured clock's time (RELGRAPH_AS_OF, else now)."""
    try:
        return parse_time(args.as_of, "--as-of") if args.as_of else clock_at(config.server.as_of).now()
    except RelgraphError as exc:
        raise ConfigError(str(exc)) from exc


def cmd_forecast(args: argparse.Namespace, config: Config) -> int:
    from gnn.registry import ModelRegistry
    from jobs.forecast import backtest_tenants, forecast_tenant, plot_backtest, plot_forecast, render_backtest
    from relgraph.query import render_forecast, response_json
    from server.pipeline_service import MAX_PERIODS, forecast_response

    periods = args.periods or (6 if args.backtest else 4)
    if not 1 <= periods <= (24 if args.backtest else MAX_PERIODS):
        raise ConfigError(f"--periods must be 1-{24 if args.backtest else MAX_PERIODS}")
    tenant, as_of = _tenant_id(args.tenant), _as_of(args, config)
    with _open_store(config) as store:
        if args.backtest:
            (backtest,) = backtest_tenants(
                store, [tenant], as_of, args.period, periods, _deal_settings(args), progress=sys.stderr.isatty()
            )
            if args.plot and backtest.rows:
                plot_backtest(backtest, args.plot)
            _emit(backtest.to_dict(), args.json, render_backtest)
            return 0
        result, version, teams = forecast_tenant(
            store, ModelRegistry(config.models_dir), tenant, as_of, args.period, periods
        )
    if args.plot:
        plot_forecast(result, args.plot)
    response = forecast_response(result, version, by_rep=args.by == "rep", teams=teams if args.by == "team" else None)
    print(response_json(response) if args.json else render_forecast(response))
    return 0


def cmd_proposals(args: argparse.Namespace, config: Config) -> int:
    from gnn.registry import ModelRegistry
    from graph.pseudonymize import Pseudonymizer
    from jobs.pipeline import decide, proposal_queue, render_proposals

    tenant, as_of, registry = _tenant_id(args.tenant), _as_of(args, config), ModelRegistry(config.models_dir)
    if args.action:
        if len(args.action) != 3 or args.action[0] != "decide" or args.action[2] not in ("accept", "reject"):
            raise ConfigError("usage: relgraph proposals decide ID accept|reject --tenant T")
        with _open_store(config) as store:
            decided = decide(store, registry, tenant, as_of, args.action[1], args.action[2])
        print(f"recorded: {args.action[2]} {decided.field} of {decided.deal_id} -> {decided.proposed}")
        return 0
    rep = Pseudonymizer(network_key(config)).pid(args.rep) if args.rep else None
    with _open_store(config) as store:
        queue = proposal_queue(store, registry, tenant, as_of, rep)
    queue = dataclasses.replace(queue, proposals=queue.proposals[: max(0, args.limit)])
    _emit(queue.to_dict(), args.json, render_proposals)
    return 0


def cmd_audit(args: argparse.Namespace, config: Config) -> int:
    from gnn.registry import ModelRegistry
    from jobs.pipeline import audit_tenant
    from relgraph.query import render_pipeline_health, response_json
    from server.pipeline_service import MAX_SAMPLE, MAX_STALE_DAYS, health_response

    if not 1 <= args.stale_days <= MAX_STALE_DAYS or not 0 <= args.sample <= MAX_SAMPLE:
        raise ConfigError(f"--stale-days must be 1-{MAX_STALE_DAYS} and --sample 0-{MAX_SAMPLE}")
    as_of = _as_of(args, config)
    with _open_store(config) as store:
        audit, version = audit_tenant(
            store,
            ModelRegistry(config.models_dir),
            _tenant_id(args.tenant),
            as_of,
            stale_days=args.stale_days,
            sample=args.sample,
        )
    response = health_response(audit, version)
    print(response_json(response) if args.json else render_pipeline_health(response))
    return 0


def cmd_evaluate(args: argparse.Namespace, config: Config) -> int:
    from jobs.evaluate import evaluate_deals, evaluate_links
    from jobs.tracking import record_run
    from jobs.trainers import TRAINERS

    key = network_key(config, create_local=True)
    report: Any
    if args.task == "paths":
        return _evaluate_paths(args, config, key)
    evaluate, settings, trainer = (
        (evaluate_links, _link_settings(args), TRAINERS["link"])
        if args.task == "links"
        else (evaluate_deals, _deal_settings(args), TRAINERS["deal"])
    )
    report = evaluate(
        config,
        args.dataset,
        settings,
        network_key=key,
        progress=sys.stderr.isatty(),
        strict=args.strict,
        report=lambda summary: print(_render_ingest(summary.to_dict()), file=sys.stderr),
    )
    with tempfile.TemporaryDirectory(prefix="relgraph-evaluate-plots-") as tmp:
        plots = (
            trainer.plots(report.manifest, args.out or Path(tmp))
            if trainer.plots is not None and (args.out is not None or args.track)
            else []
        )
        for path in plots if args.out is not None else ():
            print(f"wrote {path}", file=sys.stderr)
        tracked = (
            record_run(
                config.tracking_store,
                model=trainer.kind.name,
                task="evaluate",
                manifest=report.manifest,
                artifacts=plots,
            )
            if args.track
            else None
        )
    _say_tracked(tracked)
    _emit({**report.to_dict(), "tracked": tracked}, args.json, trainer.render)
    return 0


def _say_tracked(tracked: dict[str, str] | None) -> None:
    if tracked:
        print(
            f"tracked: MLflow run {tracked['run_id']} in {tracked['experiment']} ({tracked['store']})", file=sys.stderr
        )


def _evaluate_paths(args: argparse.Namespace, config: Config, key: str) -> int:
    from jobs.evaluate_paths import PathEvalSettings, evaluate_paths, render

    if args.as_of is None:
        raise ConfigError("evaluate paths needs --as-of: the time the questions are asked at")
    try:
        as_of = parse_time(args.as_of, "--as-of")
    except RelgraphError as exc:
        raise ConfigError(str(exc)) from exc
    settings = PathEvalSettings(
        as_of=as_of,
        horizon_days=90 if args.horizon_days is None else int(args.horizon_days),
        queries=args.queries,
        k=args.k,
        targets=args.targets,
        seed=args.seed or 0,
    )
    report = evaluate_paths(config, args.dataset, settings, network_key=key, progress=sys.stderr.isatty())
    _emit(report.to_dict(), args.json, lambda _: render(report))
    return 0


def cmd_models(args: argparse.Namespace, config: Config) -> int:
    from gnn.registry import ModelRegistry
    from jobs.promotion import gate_refusal, promote_forced

    registry = ModelRegistry(config.models_dir)
    model = args.model
    if args.action == "list":
        rows = [v.summary() for v in registry.versions(model)]
        _emit(
            rows,
            args.json,
            lambda rs: (
                "\n".join(
                    f"{r['version']}{' *' if r['promoted'] else '  '} {r['created']}  schema {r['schema_hash']}  "
                    + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in r["metrics"].items())
                    for r in rs
                )
                or f"no {model} models yet: run `relgraph train --model {model}`"
            ),
        )
        return 0
    if not args.version:
        raise ConfigError(f"models {args.action} needs a VERSION (see `relgraph models list --model {model}`)")
    version = registry.version(model, args.version)
    if args.action == "promote":
        refused = gate_refusal(version.manifest)
        if refused is not None and not args.force:
            raise ConfigError(
                f"{model} model {version.name} did not pass the promotion gate ({refused}); "
                "pass --force to promote it anyway (recorded in its manifest)"
            )
        if args.force:
            promote_forced(registry, model, version.name)
        else:
            registry.promote(model, version.name)
        print(
            f"promoted {model} model {version.name}; servers pick it up "
            + ("at their next snapshot refresh" if model == "link" else "at their next request")
        )
        return 0
    _emit(
        {**version.manifest, "path": str(version.path), "promoted": version.promoted},
        args.json,
        lambda m: (version.path / "card.md").read_text() + f"\nartifact: {m['path']}",
    )
    return 0


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from server.app import serve

    server = dataclasses.replace(
        config.server,
        **{
            k: v
            for k, v in (
                ("host", args.host),
                ("port", args.port),
                ("http_port", args.http_port),
                ("metrics_port", args.metrics_port),
            )
            if v is not None
        },
    )
    serve(dataclasses.replace(config, server=server))
    return 0


def cmd_keys(args: argparse.Namespace, config: Config) -> int:
    from graph import tenancy
    from graph.neo4j_reader import Neo4jReader
    from graph.reader import ALL_TENANTS, TenantScope
    from server.auth import create_api_key

    with _open_store(config) as store:
        if args.action == "create":
            if not args.tenant or not args.role:
                raise ConfigError("keys create needs --tenant and --role")
            key, record = create_api_key(
                store,
                api_key_pepper(config, create_local=True),
                tenant=_tenant_id(args.tenant),
                role=args.role,
                scopes=args.scope,
                label=args.label,
            )
            _emit(
                {
                    "key": key,
                    "key_id": record.key_id,
                    "tenant": record.tenant,
                    "role": record.role,
                    "scopes": list(record.scopes),
                },
                args.json,
                lambda r: (
                    f"{r['key']}\n(key {r['key_id']}: {r['role']} of tenant {r['tenant']}"
                    + (f", scopes {' '.join(r['scopes'])}" if r["scopes"] else "")
                    + "; shown only now)"
                ),
            )
        elif args.action == "revoke":
            if not args.key_id:
                raise ConfigError("keys revoke needs --key-id")
            revoked = tenancy.revoke_key(
                store, args.key_id, TenantScope.of(args.tenant) if args.tenant else ALL_TENANTS
            )
            print(f"revoked {args.key_id}" if revoked else f"no active key {args.key_id}")
            return 0 if revoked else 1
        else:
            rows = [
                {
                    "key_id": r.key_id,
                    "tenant": r.tenant,
                    "role": r.role,
                    "scopes": list(r.scopes),
                    "label": r.label,
                    "created_at": r.created_at,
                    "revoked": r.revoked,
                }
                for r in Neo4jReader(store).api_keys(TenantScope.of(args.tenant) if args.tenant else ALL_TENANTS)
            ]
            _emit(
                rows,
                args.json,
                lambda rs: "\n".join(
                    f"{r['key_id']}  {r['tenant']:<16} {r['role']:<8} {'revoked' if r['revoked'] else 'active':<8} "
                    f"{' '.join(r['scopes'])} {r['label']}"
                    for r in rs
                ),
            )
    return 0


def cmd_tenants(args: argparse.Namespace, config: Config) -> int:
    from graph.tenancy import set_sharing

    with _open_store(config) as store:
        result = set_sharing(
            store, _tenant_id(args.tenant), share_identities=args.share_identities, network_opt_out=args.network_opt_out
        )
    _emit(
        result,
        args.json,
        lambda r: (
            f"tenant {args.tenant}: share_identities={r['share_identities']}, network_opt_out={r['network_opt_out']}"
        ),
    )
    return 0


def cmd_query(args: argparse.Namespace, config: Config) -> int:
    from relgraph.query import run_query

    return run_query(args)


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    from relgraph.demo import run_demo

    return run_demo(
        config, people=args.people, tenants=args.tenants, seed=args.seed, key=network_key(config, create_local=True)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relgraph", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("neo4j", help="install, start, stop or inspect the managed local Neo4j")
    p.add_argument("action", choices=("install", "start", "stop", "status"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_neo4j)

    p = sub.add_parser("ingest", help="validate, pseudonymize and load files in the public ingest format")
    p.add_argument("paths", nargs="+", help="files (.jsonl, .csv, optionally .gz) or folders of them")
    p.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="refuse a whole file if any record in it is invalid (default: on)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="records per write transaction")
    p.add_argument(
        "--initial",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bulk initial load with neo4j-admin import: the empty managed database only, stopped meanwhile "
        "(default: when that database is empty and the input holds at least [ingest] initial_auto_mb)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("erase", help="erase what one tenant, or the whole network, holds about a person")
    p.add_argument("--email", required=True)
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--tenant", help="erase what this tenant holds about the person")
    scope.add_argument(
        "--network", action="store_true", help="erase the person everywhere (a network operator's action, audited)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_erase)

    p = sub.add_parser("stats", help="node and relationship counts, overall and per tenant")
    p.add_argument("--tenant")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_stats)

    p = sub.add_parser("cypher", help="run a read-only Cypher query (writes are refused)")
    p.add_argument("query")
    p.add_argument("--params", help="query parameters as a JSON object")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_cypher)

    p = sub.add_parser("generate", help="write a synthetic multi-tenant network with ground truth")
    p.add_argument("--people", type=int, default=2000)
    p.add_argument("--tenants", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--hygiene", type=float, default=0.4, help="share of CRM records that are right and current")
    p.add_argument("--deals-per-100-people", type=float, default=2.0, help="how many deals the tenants run")
    p.add_argument(
        "--relationships-per-person",
        type=float,
        help="network density: about this many relationships per person (default: members hold 30 ties each)",
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("bench", help="benchmarks that write measured numbers")
    p.add_argument("what", choices=("ingest", "warm-paths", "grpc", "train", "deals", "forecast"))
    p.add_argument("--people", type=int, default=100_000)
    p.add_argument(
        "--baseline-events",
        type=int,
        default=2000,
        help="ingest: events ingested one transaction per event for the naive baseline",
    )
    p.add_argument(
        "--initial",
        action="store_true",
        help="ingest: also bulk-load the same files (ingest --initial) and compare; warm-paths: load in bulk",
    )
    p.add_argument(
        "--relationships-per-person",
        type=float,
        help="warm-paths: network density, as `generate --relationships-per-person` (default: the generator's)",
    )
    p.add_argument("--queries", type=int, default=1000, help="warm-paths: queries answered from the snapshot")
    p.add_argument("--cypher-queries", type=int, default=200, help="warm-paths: of those, how many also in Cypher")
    p.add_argument("--seconds", type=float, default=10.0, help="grpc: how long each call is driven")
    p.add_argument("--concurrency", type=int, default=8, help="grpc: concurrent streams (ghz's -c)")
    p.add_argument(
        "--soak-minutes",
        type=float,
        default=0.0,
        help="grpc: then drive FindWarmPaths at 80%% of its measured maximum this long, sampling the server's RSS",
    )
    p.add_argument("--workers", default="1,2", help="train: Ray worker counts to compare, e.g. 1,2")
    p.add_argument("--epochs", type=int, help="train, deals, grpc: epochs per run (default: as `relgraph train`)")
    p.add_argument("--hygiene", default="0.2,0.4,0.6,0.8,1.0", help="deals, forecast: CRM hygiene levels to sweep")
    p.add_argument("--requests", type=int, default=200, help="deals: requests per RPC for the latency numbers")
    p.add_argument("--plot", type=Path, help="deals: write the accuracy-vs-hygiene plot here (PNG)")
    p.add_argument("--period", choices=("month", "quarter"), default="month", help="forecast: period length")
    p.add_argument("--periods", type=int, default=6, help="forecast: past periods backtested")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_bench)

    def training_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workers", type=int, help="Ray Train workers (DDP; default 1); RAY_ADDRESS selects a cluster")
        p.add_argument("--epochs", type=int, help="training epochs (default: link 10, deal 60)")
        p.add_argument("--seed", type=int, help="random seed (default 0)")
        p.add_argument(
            "--track",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="record the run in MLflow: MLFLOW_TRACKING_URI, else SQLite under RELGRAPH_HOME/mlflow",
        )
        p.add_argument(
            "--horizon-days",
            type=float,
            help="link: predict a two-way interaction within this many days (default 30); "
            "paths: days after --as-of that confirm a path (default 90)",
        )
        p.add_argument(
            "--stages",
            help="deal: the CRM's stage codes in order, comma-separated "
            "(default discovery,evaluation,proposal,negotiation)",
        )
        p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train models on Ray, evaluate them and register the runs")
    p.add_argument("--model", choices=("link", "deal", "buyer", "all"), required=True)
    p.add_argument("--tenant", help="train on one tenant's data only (default: network-wide, without opt-outs)")
    p.add_argument("--since", type=int, help="data window start, Unix seconds")
    p.add_argument("--until", type=int, help="data window end (exclusive), Unix seconds")
    p.add_argument("--resume", action="store_true", help="continue the newest unfinished run from its checkpoint")
    p.add_argument(
        "--promote",
        action="store_true",
        help="promote each new version that passes its gate: no worse than the serving version and every "
        "baseline on its test split, beyond a noise margin",
    )
    training_options(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("export", help="write the graph at a time as PyG HeteroData (torch.save), for notebooks")
    p.add_argument("what", choices=("graph",))
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--at", type=int, help="the time the graph is taken at, Unix seconds (default: --until or now)")
    p.add_argument("--tenant", help="one tenant's data only (default: network-wide, without opt-outs)")
    p.add_argument("--since", type=int, help="data window start, Unix seconds")
    p.add_argument("--until", type=int, help="data window end (exclusive), Unix seconds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser(
        "evaluate", help="score the link or deal model, or the warm-path ranking, against baselines on any dataset"
    )
    p.add_argument("task", choices=("links", "deals", "paths"))
    p.add_argument("--dataset", required=True, type=Path, help="files or a folder in the public ingest format")
    p.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="links, deals: refuse the dataset if any record in it is invalid; --no-strict leaves bad records out",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="links, deals: write the report's plots here (reliability, training curves; deals also the stage "
        "confusion matrix and the close-date interval's coverage)",
    )
    training_options(p)
    p.add_argument("--as-of", help="paths: when the questions are asked (ISO 8601 or Unix seconds)")
    p.add_argument("--queries", type=int, default=300, help="paths: questions asked (default 300)")
    p.add_argument("--k", type=int, default=3, help="paths: paths per answer (default 3)")
    p.add_argument(
        "--targets",
        choices=("auto", "vp+", "any"),
        default="auto",
        help="paths: who is asked for (default: vp+ when the dataset has titles, else any)",
    )
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("models", help="list, show or promote registered models")
    p.add_argument("action", choices=("list", "show", "promote"))
    p.add_argument("version", nargs="?")
    p.add_argument("--model", choices=("link", "deal", "buyer"), default="link")
    p.add_argument(
        "--force",
        action="store_true",
        help="promote: even a version its promotion gate refused (the override is recorded in its manifest)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("serve", help="run the gRPC server (relgraph.v1), optionally HTTP/JSON and the web page too")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--http-port", type=int, help="also serve HTTP/JSON (Connect), /openapi.json and the web page here; 0: off"
    )
    p.add_argument("--metrics-port", type=int, help="Prometheus metrics port; 0 turns it off")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("keys", help="create, list or revoke API keys (stored hashed)")
    p.add_argument("action", choices=("create", "list", "revoke"))
    p.add_argument("--tenant")
    p.add_argument("--role", choices=("member", "partner", "admin"))
    p.add_argument(
        "--scope",
        action="append",
        default=[],
        help="partner scope: company:DOMAIN or max-hops:N; member scope: team:CODE (its team's pipeline only)",
    )
    p.add_argument("--label", default="")
    p.add_argument("--key-id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_keys)

    p = sub.add_parser("tenants", help="a tenant's sharing settings")
    p.add_argument("action", choices=("configure",))
    p.add_argument("tenant")
    p.add_argument(
        "--share-identities",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show this tenant's members by pseudonym in other tenants' warm paths",
    )
    p.add_argument(
        "--network-opt-out",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use this tenant's relationships for its own answers only",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_tenants)

    p = sub.add_parser("forecast", help="a tenant's bookings forecast beside the CRM's, or its backtest")
    p.add_argument("--tenant", required=True)
    p.add_argument("--period", choices=("quarter", "month"), default="quarter")
    p.add_argument("--periods", type=int, help="periods forecast (default 4) or backtested (default 6)")
    p.add_argument(
        "--by", choices=("rep", "team"), help="also break the expected bookings down by deal owner, or by their team"
    )
    p.add_argument(
        "--as-of", help="forecast as of this time (epoch seconds or ISO 8601); default RELGRAPH_AS_OF or now"
    )
    p.add_argument("--backtest", action="store_true", help="replay past periods, each from what was known then")
    p.add_argument("--stages", help="backtest: the CRM's stage codes in order (as `relgraph train`)")
    p.add_argument("--workers", type=int)
    p.add_argument("--epochs", type=int, help="backtest: training epochs per period (default 60)")
    p.add_argument("--seed", type=int)
    p.add_argument("--plot", type=Path, help="write the forecasts (or the backtest) as a PNG here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_forecast)

    p = sub.add_parser("proposals", help="CRM updates the evidence supports, for reps to approve (never written)")
    p.add_argument("action", nargs="*", metavar="decide ID accept|reject", help="record a rep's decision")
    p.add_argument("--tenant", required=True)
    p.add_argument("--rep", help="only the deals this rep (email) owns")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--as-of", help="as of this time (epoch seconds or ISO 8601); default RELGRAPH_AS_OF or now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_proposals)

    p = sub.add_parser("audit", help="audit a tenant's CRM hygiene (its open deals against their behaviour)")
    p.add_argument("what", choices=("hygiene",))
    p.add_argument("--tenant", required=True)
    p.add_argument("--stale-days", type=int, default=30, help="days without an interaction that make a deal stale")
    p.add_argument("--sample", type=int, default=50, help="deals in the random sample shown with their findings")
    p.add_argument("--as-of", help="audit as of this time (epoch seconds or ISO 8601); default RELGRAPH_AS_OF or now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_audit)

    from relgraph.query import add_query_parser

    add_query_parser(sub, cmd_query)

    p = sub.add_parser("demo", help="start Neo4j, generate a network, ingest it and show what was built")
    p.add_argument("--people", type=int, default=3000)
    p.add_argument("--tenants", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. An error is one line and a non-zero exit: a RelgraphError says what to do
    about it, an OSError what failed on which file or address; anything else is a bug, reported as
    such. `--debug` shows the traceback."""
    args = build_parser().parse_args(argv)
    if not args.debug:
        # PyTorch Geometric still compiles helpers with torch.jit.script; nothing a user can act on.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    try:
        return int(args.run(args, load_config()))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, RelgraphError | OSError):
            print(f"relgraph: error: {exc}", file=sys.stderr)
        else:
            print(
                f"relgraph: internal error ({type(exc).__name__}: {exc}); run again with --debug for the "
                "traceback, and report it",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
