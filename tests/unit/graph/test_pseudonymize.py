import pytest

from core.errors import RecordError
from graph.pseudonymize import PID_HEX_CHARS, Pseudonymizer, normalize_domain, normalize_email


@pytest.mark.parametrize("raw", ["Ana.Lopez@Example.COM", "  ana.lopez@example.com ", "mailto:ana.lopez@example.com"])
def test_emails_normalize_to_one_form(raw: str) -> None:
    assert normalize_email(raw) == "ana.lopez@example.com"


@pytest.mark.parametrize(
    "raw", ["", "ana", "ana@", "@example.com", "ana@example", "ana lopez@example.com", "a@b@c.com"]
)
def test_invalid_emails_are_rejected(raw: str) -> None:
    with pytest.raises(RecordError):
        normalize_email(raw)


def test_rejections_do_not_echo_the_address_into_logs() -> None:
    with pytest.raises(RecordError) as info:
        normalize_email("secret person@example.com")
    assert "secret person" not in info.value.reason


def test_pid_is_a_keyed_fixed_width_hmac() -> None:
    a, b = Pseudonymizer("key-one-0123456789"), Pseudonymizer("key-two-0123456789")
    pid = a.pid("Ana.Lopez@example.com")
    assert pid == a.pid("ana.lopez@example.com")
    assert len(pid) == PID_HEX_CHARS and int(pid, 16) >= 0
    assert pid != b.pid("ana.lopez@example.com")
    assert pid != a.pid("ana.lopez@example.org")
    # Known answer: HMAC-SHA256("key-one-0123456789", "ana.lopez@example.com"), truncated.
    import hashlib
    import hmac

    expected = hmac.new(b"key-one-0123456789", b"ana.lopez@example.com", hashlib.sha256).hexdigest()[:PID_HEX_CHARS]
    assert pid == expected


def test_domains_normalize_and_reject_garbage() -> None:
    assert normalize_domain("WWW.Acme.example") == "acme.example"
    with pytest.raises(RecordError):
        normalize_domain("not a domain")
