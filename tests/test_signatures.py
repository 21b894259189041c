"""What every signature check shares: the error, secrets, comparisons, time windows, replays."""

from __future__ import annotations

import hmac
import subprocess
import sys
import threading
import time

import pytest

from bounce_middleware import BounceError, ConfigurationError
from bounce_middleware.signatures import (
    MAX_FUTURE,
    SeenTokens,
    SignatureError,
    check_timestamp,
    load_secrets,
)
from bounce_middleware.signatures.common import decode_base64, header_value, matches_any

NOW = 1_700_000_000.0


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


# -- the one exception ----------------------------------------------------------------------


def test_signature_error_is_a_bounce_error_and_a_value_error_with_its_reason() -> None:
    error = SignatureError("signature does not match")
    assert isinstance(error, BounceError) and isinstance(error, ValueError)
    assert error.reason == str(error) == "signature does not match"


# -- loading and nothing else: no cryptography, no urllib -----------------------------------


def test_importing_the_package_imports_neither_cryptography_nor_urllib_request() -> None:
    result = run(
        "import sys, bounce_middleware.signatures; "
        "assert 'cryptography' not in sys.modules, 'cryptography imported'; "
        "assert 'urllib.request' not in sys.modules, 'urllib.request imported'"
    )
    assert result.returncode == 0, result.stderr


def test_without_cryptography_the_ecdsa_and_rsa_checks_name_the_extra() -> None:
    result = run(
        "import sys; sys.modules['cryptography'] = None\n"
        "from bounce_middleware import ImproperlyInstalled\n"
        "from bounce_middleware.signatures import CertificateCache, load_sendgrid_keys,"
        " verify_sns, verify_mailgun, load_secrets, sign_mailgun\n"
        "for call in (lambda: load_sendgrid_keys('MFkw'),"
        " lambda: verify_sns({}, CertificateCache(lambda url: b''))):\n"
        "    try:\n"
        "        call()\n"
        "    except ImproperlyInstalled as error:\n"
        "        assert error.extra == 'crypto', error.extra\n"
        "        assert 'pip install \"bounce-middleware[crypto]\"' in str(error), str(error)\n"
        "    else:\n"
        "        raise AssertionError('no ImproperlyInstalled')\n"
        "keys = load_secrets('k', what='key')\n"
        "verify_mailgun(keys, timestamp='1', token='t',"
        " signature=sign_mailgun(keys[0], timestamp='1', token='t'), now=1.0)\n"
    )
    assert result.returncode == 0, result.stderr


# -- secrets ---------------------------------------------------------------------------------


def test_load_secrets_takes_one_string_or_several_for_rotation() -> None:
    assert load_secrets("old", what="key") == (b"old",)
    assert load_secrets(["old", b"new"], what="key") == (b"old", b"new")
    # One string is one secret, even with a space: never split.
    assert load_secrets("a b", what="key") == (b"a b",)


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ([], "no Mailgun key configured"),
        (None, "no Mailgun key configured (got NoneType)"),
        (42, "no Mailgun key configured (got int)"),
        ("", "Mailgun key 1 is empty"),
        (["s3cret-one", "  "], "Mailgun key 2 is empty"),
        (["s3cret-one", None], "Mailgun key 2 is NoneType, not a string"),
        (["\udcff"], "Mailgun key 1 is not valid UTF-8 text"),
    ],
)
def test_load_secrets_fails_closed_without_echoing_a_secret(secrets: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_secrets(secrets, what="Mailgun key")  # type: ignore[arg-type]
    assert str(caught.value) == message
    assert "s3cret" not in str(caught.value)


# -- constant-time comparison ----------------------------------------------------------------


def test_matches_any_compares_every_pair_even_after_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    # common.py calls hmac.compare_digest through the module: patch it there.
    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert matches_any([b"first", b"second", b"third"], [b"first", b"other"])
    assert len(calls) == 6  # 3 secrets x 2 candidates: no early exit on the first match
    calls.clear()
    assert not matches_any([b"first", b"second"], [b"none"])
    assert len(calls) == 2


def test_matches_any_with_nothing_given_or_expected_is_false() -> None:
    assert not matches_any([b"a"], [])
    assert not matches_any([], [b"a"])


# -- base64 and headers ----------------------------------------------------------------------


def test_decode_base64_drops_line_breaks_and_refuses_anything_else() -> None:
    assert decode_base64("aGVs\nbG8=\n", what="sig") == b"hello"
    for bad in ("aGVsbG8", "aGVs*G8=", "aGVsbG8=é", "-_-_"):
        with pytest.raises(SignatureError, match="^sig is not base64$"):
            decode_base64(bad, what="sig")


def test_header_value_refuses_missing_blank_and_oversized_values() -> None:
    assert header_value(" v1,abc ", what="X header") == "v1,abc"
    for missing in (None, "", "   "):
        with pytest.raises(SignatureError, match="^missing X header$"):
            header_value(missing, what="X header")
    with pytest.raises(SignatureError, match="longer than 8 characters"):
        header_value("123456789", what="X header", max_length=8)


# -- timestamp windows -----------------------------------------------------------------------


def test_check_timestamp_accepts_the_window_edges_and_returns_seconds() -> None:
    assert check_timestamp(str(int(NOW)), max_age=300, now=NOW) == NOW
    assert check_timestamp(str(int(NOW) - 300), max_age=300, now=NOW) == NOW - 300
    assert check_timestamp(int(NOW) + 300, max_age=300, now=NOW) == NOW + 300
    assert check_timestamp(NOW - 12.5, max_age=300, now=NOW) == NOW - 12.5


def test_check_timestamp_refuses_stale_and_far_future_times() -> None:
    with pytest.raises(
        SignatureError, match="^timestamp is stale: 301 s old, the window is 300 s$"
    ):
        check_timestamp(str(int(NOW) - 301), max_age=300, now=NOW)
    with pytest.raises(
        SignatureError, match="^timestamp is 301 s in the future, at most 300 s is allowed$"
    ):
        check_timestamp(str(int(NOW) + 301), max_age=3600, now=NOW)
    with pytest.raises(SignatureError, match="in the future, at most 10 s"):
        check_timestamp(NOW + 11, max_age=3600, max_future=10, now=NOW)
    assert MAX_FUTURE == 300


def test_check_timestamp_uses_the_clock_when_now_is_not_given() -> None:
    check_timestamp(str(int(time.time())), max_age=60)
    with pytest.raises(SignatureError, match="stale"):
        check_timestamp(str(int(time.time()) - 120), max_age=60)


@pytest.mark.parametrize(
    "value",
    ["", " 1700000000", "+1700000000", "1700000000.5", "1.7e9", "1_700_000_000", "١٧٠٠٠٠٠٠٠٠"]
    + ["12345678901234", "now", True, -1],
)
def test_check_timestamp_reads_only_plain_decimal_seconds(value: object) -> None:
    with pytest.raises(SignatureError) as caught:
        check_timestamp(value, max_age=10**12, now=NOW)  # type: ignore[arg-type]
    assert caught.value.reason == "timestamp is not a Unix time in seconds"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_check_timestamp_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(SignatureError, match="not a finite time"):
        check_timestamp(value, max_age=10**12, now=NOW)


def test_a_reason_never_quotes_what_the_request_sent() -> None:
    with pytest.raises(SignatureError) as caught:
        check_timestamp("<script>\r\nX-Forged: 1", max_age=10, now=NOW, what="svix-timestamp")
    assert caught.value.reason == "svix-timestamp is not a Unix time in seconds"


# -- the replay memory -----------------------------------------------------------------------


def test_seen_tokens_refuses_a_token_twice_within_the_window() -> None:
    seen = SeenTokens(window=300)
    seen.remember("token-1", timestamp=NOW, now=NOW)
    with pytest.raises(SignatureError, match=r"^token already used \(a replayed request\)$"):
        seen.remember("token-1", timestamp=NOW, now=NOW + 299)
    seen.remember("token-2", timestamp=NOW, now=NOW + 1)
    assert len(seen) == 2


def test_seen_tokens_forgets_a_token_once_its_timestamp_is_stale() -> None:
    seen = SeenTokens(window=300)
    seen.remember("token-1", timestamp=NOW, now=NOW)
    # At NOW + 300 the window check itself refuses the timestamp; the memory may let go.
    seen.remember("token-1", timestamp=NOW + 300, now=NOW + 300)
    seen.remember("token-2", timestamp=NOW + 301, now=NOW + 301)
    seen.remember("token-3", timestamp=NOW + 700, now=NOW + 700)
    assert len(seen) == 1  # expired entries were purged on the way


def test_seen_tokens_forget_lets_a_failed_delivery_be_retried() -> None:
    seen = SeenTokens(window=300)
    seen.remember("token-1", timestamp=NOW, now=NOW)
    seen.forget("token-1")
    seen.remember("token-1", timestamp=NOW, now=NOW + 60)  # the provider's retry
    seen.forget("never-seen")  # harmless


def test_seen_tokens_is_bounded_and_forgets_the_oldest_first() -> None:
    seen = SeenTokens(window=3600, max_entries=3)
    for number in range(5):
        seen.remember(f"token-{number}", timestamp=NOW, now=NOW)
    assert len(seen) == 3
    seen.remember("token-0", timestamp=NOW, now=NOW)  # evicted: no longer protected
    with pytest.raises(SignatureError):
        seen.remember("token-4", timestamp=NOW, now=NOW)  # recent: still refused


def test_seen_tokens_accepts_a_token_once_among_concurrent_requests() -> None:
    seen = SeenTokens(window=300)
    accepted: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(16)

    def deliver(number: int) -> None:
        barrier.wait()
        try:
            seen.remember("same-token", timestamp=NOW, now=NOW)
        except SignatureError:
            refused.append(number)
        else:
            accepted.append(number)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 1 and len(refused) == 15


def test_seen_tokens_keeps_every_distinct_token_from_many_threads() -> None:
    seen = SeenTokens(window=300)

    def deliver(number: int) -> None:
        for index in range(200):
            seen.remember(f"{number}-{index}", timestamp=NOW, now=NOW)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 1600


@pytest.mark.parametrize(("window", "max_entries"), [(0, 10), (-1, 10), (300, 0)])
def test_seen_tokens_refuses_a_useless_configuration(window: float, max_entries: int) -> None:
    with pytest.raises(ConfigurationError):
        SeenTokens(window=window, max_entries=max_entries)
