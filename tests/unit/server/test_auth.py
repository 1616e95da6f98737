import pytest

from core.config import RateLimit, ServerConfig
from core.errors import InvalidInputError, PermissionDeniedError, RateLimitedError
from server.auth import AuthContext, RateLimiter, authorize, validate_scopes


def ctx(role: str, *scopes: str) -> AuthContext:
    return AuthContext(tenant="acme", role=role, scopes=frozenset(scopes), key_id=f"k-{role}")


def test_scopes_are_validated_and_normalized() -> None:
    assert validate_scopes("partner", ["company:WWW.Buyer.example", "max-hops:2"]) == [
        "company:buyer.example",
        "max-hops:2",
    ]
    assert validate_scopes("member", ["team:sales_east"]) == ["team:sales_east"]
    for role, scopes in (
        ("member", ["company:buyer.example"]),
        ("member", ["team:sales_east", "team:sales_west"]),
        ("member", ["team:Not A Code"]),
        ("partner", ["team:sales_east"]),
        ("admin", ["team:sales_east"]),
        ("partner", ["company:not a domain"]),
        ("partner", ["max-hops:9"]),
        ("partner", ["tenant:other"]),
        ("root", []),
    ):
        with pytest.raises(InvalidInputError):
            validate_scopes(role, scopes)
    partner = ctx("partner", "company:buyer.example", "max-hops:2", "max-hops:3")
    assert partner.company_scope == {"buyer.example"} and partner.max_hops_scope == 2
    assert partner.team_scope is None and ctx("member", "team:sales_east").team_scope == "sales_east"


def test_roles_gate_methods() -> None:
    find = "/relgraph.v1.WarmPathsService/FindWarmPaths"
    for role in ("member", "partner", "admin"):
        authorize(ctx(role), find)
    for method in (
        "/relgraph.v1.BuyerIntelligenceService/EstimateDealStage",
        "/relgraph.v1.WarmPathsService/ResolvePeople",
        "/relgraph.v1.IngestService/IngestEvents",
    ):
        with pytest.raises(PermissionDeniedError):
            authorize(ctx("partner"), method)
        authorize(ctx("member"), method)
    with pytest.raises(PermissionDeniedError):
        authorize(ctx("member"), "/relgraph.v1.AdminService/CreateApiKey")
    authorize(ctx("admin"), "/relgraph.v1.IngestService/EraseSubject")
    team = ctx("member", "team:sales_east")  # reads, never writes
    authorize(team, "/relgraph.v1.PipelineService/ForecastBookings")
    with pytest.raises(PermissionDeniedError, match="only reads"):
        authorize(team, "/relgraph.v1.IngestService/IngestEvents")


def test_rate_limiter_is_a_token_bucket_per_key() -> None:
    limiter = RateLimiter(ServerConfig(partner_rate=RateLimit(per_second=0.001, burst=3)))
    partner, member = ctx("partner"), ctx("member")
    for _ in range(3):
        limiter.check(partner)
    with pytest.raises(RateLimitedError) as info:
        limiter.check(partner)
    assert info.value.retry_after_s > 0
    for _ in range(50):  # another key (and role) has its own bucket
        limiter.check(member)
