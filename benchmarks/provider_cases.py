"""The providers of the provider rows: how to make each one's requests, what each side checks.

Nine cases, in the order of the table: the four of issue 12 (Postmark,
SendGrid, Mailgun, Amazon SES) and the five of issue 13 (Mailjet, SparkPost,
Brevo, Resend, Mandrill). A case's forgeries are sent to both receivers
before timing and must be refused by both, except those listed as checked by
the middleware alone (what django-anymail does not check).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from .signers import OTHER_RESEND_SECRET, Request, Signers

#: Distinct SNS notifications signed ahead (RSA signing costs ~0.6 ms each): a batch
#: takes consecutive ones, so no batch larger than this repeats a notification.
SES_POOL = 2500


@dataclass
class Case:
    """One provider: how to make its requests, what each side checks."""

    short: str  #: the row key of the middleware's row; anymail's rows add -any, -any0
    name: str  #: the middleware's provider name
    esp_name: str  #: django-anymail's name for it, also the rows' title
    ours: str  #: what the route checks (in the row's label)
    anymail: str  #: what anymail's view checks (in the row's label)
    make: Callable[[str], Request]
    #: Requests both sides must refuse, by what is wrong with them.
    refused: Mapping[str, Callable[[str], Request]]
    #: Requests the middleware refuses and anymail does not check for.
    refused_by_ours: Mapping[str, Callable[[str], Request]] = field(default_factory=dict)
    pool: int | None = None  #: sign this many ahead and reuse them (None: sign per request)
    _signed: list[Request] = field(default_factory=list)
    _next: int = 0

    def take(self, n: int, addresses: Iterator[str]) -> list[Request]:
        """``n`` requests, each a distinct event (a pool cycles once exhausted)."""
        if self.pool is None:
            return [self.make(next(addresses)) for _ in range(n)]
        while len(self._signed) < min(n, self.pool):
            self._signed.append(self.make(next(addresses)))
        picked = [self._signed[(self._next + i) % len(self._signed)] for i in range(n)]
        self._next = (self._next + n) % len(self._signed)
        return picked


def cases(signers: Signers) -> list[Case]:
    """The nine providers, in the order of the table."""
    s = signers
    return [
        Case(
            "pm", "postmark", "Postmark", "Basic auth", "Basic auth", s.postmark,
            {"a wrong password": lambda email: s.postmark(email, "wrong")},
        ),
        Case(
            "sg", "sendgrid", "SendGrid", "ECDSA signature, timestamp window",
            "ECDSA signature, no timestamp window", s.sendgrid,
            {"a signature of another body": s.sendgrid_forged},
        ),
        Case(
            "mg", "mailgun", "Mailgun", "HMAC, timestamp window, replay memory",
            "HMAC, no timestamp window, no replay check", s.mailgun,
            {"a wrong signing key": lambda email: s.mailgun(email, "key-wrong")},
        ),
        Case(
            "ses", "amazon_ses", "Amazon SES", "Basic auth, SNS signature (v1), topic",
            "Basic auth only, NO SNS signature check", s.ses,
            {"a wrong Basic password": lambda email: s.ses(email, "wrong")},
            {"an SNS message changed after signing": lambda e: s.ses(e, forged=True)},
            pool=SES_POOL,
        ),
        Case(
            "mj", "mailjet", "Mailjet", "Basic auth", "Basic auth", s.mailjet,
            {"a wrong Basic password": lambda e: s.mailjet(e, "wrong")},
        ),
        Case(
            "sp", "sparkpost", "SparkPost", "Basic auth", "Basic auth", s.sparkpost,
            {"a wrong Basic password": lambda e: s.sparkpost(e, "wrong")},
        ),
        Case(
            "bv", "brevo", "Brevo", "Basic auth", "Basic auth", s.brevo,
            {"a wrong Basic password": lambda e: s.brevo(e, "wrong")},
        ),
        Case(
            "rs", "resend", "Resend", "Svix signature, 5-minute window",
            "Svix signature (svix package), 5-minute window", s.resend,
            {
                "a signature with another secret": lambda e: s.resend(e, OTHER_RESEND_SECRET),
                "a timestamp 10 minutes old": lambda e: s.resend(e, age=600),
            },
        ),
        Case(
            "md", "mandrill", "Mandrill", "HMAC-SHA1 over the configured URL and form",
            "HMAC-SHA1 over the configured URL and form", s.mandrill,
            {
                "a wrong webhook key": lambda e: s.mandrill(e, key="another-key"),
                "a signature over another URL": lambda e: s.mandrill(
                    e, url="https://elsewhere.example.com/hooks/mandrill"
                ),
            },
        ),
    ]  # fmt: skip
