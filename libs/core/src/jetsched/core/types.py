"""Type aliases shared across jetsched."""

from __future__ import annotations

from typing import Any, TypeAlias

JobId: TypeAlias = str
Capability: TypeAlias = str
SessionId: TypeAlias = str
Millis: TypeAlias = int
"""Milliseconds since the Unix epoch (or a duration in milliseconds, by field name)."""
Revision: TypeAlias = int
"""A KV revision: the stream sequence of a record's latest write; rises monotonically."""
JSON: TypeAlias = Any
Headers: TypeAlias = dict[str, str]
