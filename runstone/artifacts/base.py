"""The object store interface (layer 3, standard library only)."""

from __future__ import annotations

import abc
import hashlib

__all__ = ["ObjectStore", "digest_bytes"]


def digest_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``: an object's address."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ObjectStore(abc.ABC):
    """Immutable objects addressed by the SHA-256 of their content.

    Writing the same content twice stores it once; reading checks the digest.
    """

    #: where the objects live, for messages
    location: str

    @abc.abstractmethod
    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` (atomically: readers never see part of it); returns its digest."""

    @abc.abstractmethod
    def get_bytes(self, digest: str) -> bytes:
        """The object's bytes, checked against the digest.

        Raises:
            NotFoundError: no such object.
            StoreError: the stored bytes do not match the digest (corruption).
        """

    @abc.abstractmethod
    def has(self, digest: str) -> bool:
        """Whether the object is stored."""
