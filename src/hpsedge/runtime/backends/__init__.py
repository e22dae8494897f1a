"""Runtime backends. Each one imports its heavy dependency lazily, inside its constructor."""

from hpsedge.runtime.backends.base import Backend

__all__ = ["Backend"]
