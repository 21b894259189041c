"""Fixtures of the signature tests: self-made keys and certificates, and published vectors.

Nothing here is a real provider's key. The only files copied from elsewhere
are published test vectors, each named with its source in ``SOURCES.md``.
"""
