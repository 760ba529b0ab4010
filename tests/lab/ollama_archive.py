"""Build the stand-in for Ollama's Linux release archive (lab only).

No registry reachable here carries the Ollama server, so the lab installs an
archive with the real one's layout instead, through the same tasks of the
ollama_host role that a real install runs (get_url with a checksum from a
``sha256sum.txt``, unpack into the prefix, marker, service):

    bin/ollama                    POSIX sh wrapper: runs the emulator as ``ollama``
    lib/ollama/provider_emulator.py   tests/emulator/provider_emulator.py
    lib/ollama/VERSION            the version, which ``/api/version`` and
                                  ``ollama --version`` report

It is written as ``ollama-linux-amd64.tar.zst`` and, with the same content,
``ollama-linux-arm64.tar.zst``: zstd-compressed tars, the format Ollama's
Linux archives have had since 0.14 (ollama/ollama, commit 34d0c55e "Linux:
switch to zstd compression"; its scripts/install.sh downloads
``ollama-linux-${ARCH}.tar.zst``), so the lab unpacks them the way a real
install does (the role installs zstd for ``unarchive``). Next to them, a
``sha256sum.txt`` in the format Ollama publishes (``<hex>  ./<file name>``),
which ``ansible.builtin.get_url`` matches by the archive URL's file name. The
tar is deterministic (sorted names, fixed mtime, root owner; zstd writes no
time), so the same inputs give the same checksum.

Run ``python -m tests.lab.ollama_archive DEST VERSION`` to build one by hand.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from pathlib import Path

import zstandard

REPO = Path(__file__).resolve().parents[2]
EMULATOR = REPO / "tests" / "emulator" / "provider_emulator.py"
ARCHES = ("amd64", "arm64")
MTIME = 1_700_000_000  # any fixed time: the checksum must not depend on when it was built

WRAPPER = """#!/bin/sh
# Stand-in for the Ollama binary (lab only): the provider emulator, which
# answers Ollama's API, run from the lib/ollama folder next to this bin folder.
dir=$(dirname "$(readlink -f "$0")")
exec python3 "$dir/../lib/ollama/provider_emulator.py" ollama "$@"
"""


def archive_name(arch: str) -> str:
    return f"ollama-linux-{arch}.tar.zst"


def _members(version: str) -> list[tuple[str, bytes | None, int]]:
    """(path, content or None for a folder, mode), sorted by path."""
    members: list[tuple[str, bytes | None, int]] = [
        ("bin", None, 0o755),
        ("bin/ollama", WRAPPER.encode(), 0o755),
        ("lib", None, 0o755),
        ("lib/ollama", None, 0o755),
        ("lib/ollama/VERSION", f"{version}\n".encode(), 0o644),
        ("lib/ollama/provider_emulator.py", EMULATOR.read_bytes(), 0o644),
    ]
    return sorted(members)


def _tar_zst(version: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, content, mode in _members(version):
            info = tarfile.TarInfo(path)
            info.mtime = MTIME
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return zstandard.ZstdCompressor(level=19, write_content_size=True).compress(raw.getvalue())


def build_archive(dest_dir: Path, version: str) -> tuple[Path, Path]:
    """Write the archives and ``sha256sum.txt`` into ``dest_dir``.

    Returns (the folder to serve, the path of ``sha256sum.txt``).
    """
    if not EMULATOR.is_file():
        raise FileNotFoundError(f"{EMULATOR} is missing: the archive carries it as the server")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    data = _tar_zst(version)
    lines: list[str] = []
    for arch in ARCHES:
        name = archive_name(arch)
        (dest_dir / name).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  ./{name}\n")
    sums = dest_dir / "sha256sum.txt"
    sums.write_text("".join(lines))
    return dest_dir, sums


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.lab.ollama_archive DEST VERSION", file=sys.stderr)
        return 2
    folder, sums = build_archive(Path(argv[0]), argv[1])
    print(f"{folder}\n{sums.read_text()}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
