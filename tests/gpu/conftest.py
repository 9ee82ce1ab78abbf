"""The GPU tests reuse the reproduce tests' git repository fixture."""

from tests.reproduce.conftest import repo

__all__ = ["repo"]
