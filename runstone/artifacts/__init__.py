"""Content-addressed object storage: bytes by their SHA-256 digest.

``artifacts.base`` (layer 3) is the interface; ``artifacts.local`` (layer 4)
keeps objects in a directory. The metadata store holds digests and sizes,
never bytes. Captured source (diffs, untracked files, snapshots) lives here;
artifacts and datasets will too.
"""
