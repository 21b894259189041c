"""Small text helpers shared by the core: log-safe values and grammatical reasons."""

from __future__ import annotations

#: Longer values are cut in logs: a payload field may be a megabyte long.
MAX_LOGGED_LENGTH = 200


def loggable(value: object, limit: int | None = MAX_LOGGED_LENGTH) -> str:
    """``value`` as one safe log-line fragment: control characters escaped, length capped
    at ``limit`` characters (None: not capped, for a terminal listing).

    Every value that came from a request (a Type, a record type, a key, a reason)
    goes through this before it is logged, so a CR/LF in a payload cannot forge a
    log line, and a terminal escape sequence cannot reach an operator's terminal.
    """
    text = value if type(value) is str else str(value)
    if text.isprintable() and (limit is None or len(text) <= limit):
        return text  # the common case: nothing to do, nothing allocated
    suffix = ""
    if limit is not None and len(text) > limit:
        suffix = f"...({len(text)} characters)"
        text = text[:limit]
    # isprintable() is False for C0/C1 controls, line/paragraph separators, format
    # characters and lone surrogates: all escaped as \\xNN, \\uNNNN or \\UNNNNNNNN.
    escaped = "".join(c if c.isprintable() else _escape(c) for c in text)
    return escaped + suffix


_SHORT_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(char: str) -> str:
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def article(noun: str) -> str:
    """``noun`` with its indefinite article: "an integer", "a string"; "null" stays bare."""
    if noun == "null":
        return noun
    return ("an " if noun[:1] in ("a", "e", "i", "o", "u") else "a ") + noun
