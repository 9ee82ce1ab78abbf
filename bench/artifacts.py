"""Artifacts: hashing throughput against sha256sum, and logging a large file and a many-file directory.

    .venv/bin/python bench/artifacts.py [--file-mib 1024] [--files 10000] [--file-kib 4]

In one temporary folder on one disk, times:

- hashing a --file-mib MiB file: runstone's streamed SHA-256 vs ``sha256sum``
  (both after a first read, so both read from the page cache), as MB/s;
- ``log_artifact`` of that file, then again unchanged (the digest cache turns
  the second into a stat and a lookup), beside ``cp`` of the same file;
- ``log_artifact`` of a directory of --files files of --file-kib KiB, then
  again unchanged, beside ``cp -r`` and a bare stat walk of the same folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def timed(fn: object) -> float:
    assert callable(fn)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stat_walk(root: Path) -> int:
    count = 0
    for folder, _, files in os.walk(root):
        for name in files:
            os.stat(os.path.join(folder, name))
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--file-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--file-kib", type=int, default=4)
    args = parser.parse_args()

    import runstone
    from runstone.artifacts.base import digest_file

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chdir(root)
        big = root / "big.bin"
        with open(big, "wb") as f:
            block = os.urandom(1024 * 1024)
            for i in range(args.file_mib):
                f.write(block[i % 256 :] + block[: i % 256])  # distinct blocks, no compression games
        size_mb = big.stat().st_size / 1e6
        subprocess.run(["sha256sum", str(big)], check=True, capture_output=True)  # into the page cache
        ours_s = timed(lambda: digest_file(big))
        theirs_s = timed(lambda: subprocess.run(["sha256sum", str(big)], check=True, capture_output=True))

        folder = root / "dataset"
        for i in range(args.files):
            sub = folder / f"part-{i // 1000:03d}"
            if i % 1000 == 0:
                sub.mkdir(parents=True)
            (sub / f"{i:06d}.bin").write_bytes(os.urandom(args.file_kib * 1024))

        with runstone.init(project="bench", capture=False) as run:
            log_big_1 = timed(lambda: run.log_artifact(big))
            log_big_2 = timed(lambda: run.log_artifact(big))
            log_dir_1 = timed(lambda: run.log_artifact(folder))
            log_dir_2 = timed(lambda: run.log_artifact(folder))
        cp_big = timed(lambda: shutil.copyfile(big, root / "big-copy.bin"))
        cp_dir = timed(
            lambda: subprocess.run(["cp", "-r", str(folder), str(root / "dataset-copy")], check=True)
        )
        walk = timed(lambda: stat_walk(folder))

    print(
        f"hashing {size_mb:,.0f} MB: runstone {size_mb / ours_s:,.0f} MB/s, "
        f"sha256sum {size_mb / theirs_s:,.0f} MB/s "
        f"(ratio {theirs_s / ours_s:.2f}x)"
    )
    print(f"{'case':<42} {'runstone':>10} {'reference':>12}")
    print(f"{'log a ' + f'{size_mb:,.0f} MB file (first time)':<42} {log_big_1:>9.2f}s {cp_big:>10.2f}s cp")
    print(f"{'log it again, unchanged':<42} {log_big_2:>9.3f}s")
    label = f"log {args.files:,} files of {args.file_kib} KiB (first time)"
    print(f"{label:<42} {log_dir_1:>9.2f}s {cp_dir:>10.2f}s cp -r")
    print(f"{'log them again, unchanged':<42} {log_dir_2:>9.3f}s {walk:>10.3f}s stat walk")


if __name__ == "__main__":
    main()
