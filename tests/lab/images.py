"""Build the lab's images from Debian's archive and PyPI, cached by their inputs.

No container registry is reachable from the build and CI machines, so nothing
is pulled:

* the host image (``llmlab/host``) is a Debian 13 root filesystem made with
  debootstrap and imported into Docker; Molecule runs systemd in it;
* the stand-in service images (``llmlab/<name>``, one folder each under
  ``tests/lab/images/``) are built on top of it: LiteLLM from PyPI at the
  pinned version, the others from Debian packages.

Every tag is a hash of what went into the image (recipe, files, mirror, CA
bundle), so a second run finds the image and skips the build. Service images
are also saved as ``docker save`` archives in the cache folder, because the
lab's hosts run their own Docker engine and get them through the role's
offline-archive option.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.lab.engine import apt_install
from tests.lab.shell import log, run

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = Path(__file__).resolve().parent / "images"
# The lab's hosts are Debian 13; one Ollama host is Debian 12, the oldest
# release the project supports there.
SUITE = "trixie"
SUITES = ("trixie", "bookworm")
HOST_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-apt",
    "ca-certificates",
    "iproute2",
    "procps",
    "sudo",
)
# Bump when the way the host image is made changes in a way its inputs do not show.
HOST_RECIPE = "3"


def cache_dir() -> Path:
    base = os.environ.get("LAB_CACHE_DIR") or Path.home() / ".cache" / "llmlab"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def ca_bundle() -> Path:
    """The CA bundle that HTTPS from inside a build needs (a TLS-inspecting proxy's, here)."""
    return Path(os.environ.get("LAB_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))


def debian_mirror() -> str:
    """The Debian archive this machine's own apt uses; never a hard-coded host."""
    if os.environ.get("LAB_DEBIAN_MIRROR"):
        return os.environ["LAB_DEBIAN_MIRROR"]
    candidates: list[str] = []
    sources_dir = Path("/etc/apt/sources.list.d")
    for source in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        candidates += re.findall(r"^URIs:\s*(\S+)", source.read_text(), flags=re.MULTILINE)
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        candidates += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", legacy.read_text(), re.MULTILINE)
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    raise SystemExit(
        "no Debian archive found in /etc/apt/sources.list*; set LAB_DEBIAN_MIRROR to one"
    )


def _digest(*parts: bytes | str) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(part.encode() if isinstance(part, str) else part)
        sha.update(b"\0")
    return sha.hexdigest()[:12]


def image_exists(ref: str) -> bool:
    probe = subprocess.run(
        ["docker", "image", "inspect", ref], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0


def host_image(suite: str = SUITE) -> str:
    """Debian (13 unless told) with systemd, made by debootstrap; returns its reference."""
    if suite not in SUITES:
        raise ValueError(f"the lab builds {', '.join(SUITES)} hosts, not {suite}")
    mirror = debian_mirror()
    tag = _digest(HOST_RECIPE, suite, mirror, " ".join(HOST_PACKAGES))
    ref = f"llmlab/host:{suite}-{tag}"
    if image_exists(ref):
        log(f"host image {ref} is cached")
        return ref
    apt_install("debootstrap")
    log(f"building {ref} with debootstrap from {mirror} (about a minute)")
    with tempfile.TemporaryDirectory(prefix="llmlab-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(HOST_PACKAGES)}",
                suite,
                str(rootfs),
                mirror,
            ],
            stdout=subprocess.DEVNULL,
        )
        # A container has no console to log in on and no hardware to wait for.
        for unit in ("getty.target", "systemd-udevd.service", "systemd-udev-trigger.service"):
            run(["chroot", str(rootfs), "systemctl", "mask", unit], capture=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
            f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\n"
            "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(
            ["docker", "import", "-c", 'CMD ["/lib/systemd/systemd"]', "-", ref],
            stdin=tar.stdout.fileno() if tar.stdout else None,
            capture=True,
        )
        if tar.wait() != 0:
            raise SystemExit("tar of the debootstrap root filesystem failed")
    return ref


@dataclass(frozen=True)
class ServiceImage:
    name: str
    ref: str
    archive: Path


def _context_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def service_image(name: str, base: str, build_args: dict[str, str]) -> ServiceImage:
    """Build ``tests/lab/images/<name>`` on ``base``, flattened to one layer, and save it."""
    folder = IMAGES_DIR / name
    bundle = ca_bundle().read_bytes()
    parts: list[bytes | str] = [base, bundle, repr(sorted(build_args.items()))]
    for path in _context_files(folder):
        parts += [str(path.relative_to(folder)), path.read_bytes()]
    ref = f"llmlab/{name}:{_digest(*parts)}"
    archive = cache_dir() / f"{ref.replace('/', '_').replace(':', '_')}.tar"
    if not image_exists(ref):
        log(f"building stand-in image {ref}")
        _build_flat(folder, ref, base, build_args, bundle)
    else:
        log(f"stand-in image {ref} is cached")
    if not archive.is_file():
        log(f"saving {ref} to {archive}")
        partial = archive.with_suffix(".partial")
        run(["docker", "save", "-o", str(partial), ref])
        partial.rename(archive)
    return ServiceImage(name=name, ref=ref, archive=archive)


def _build_flat(
    folder: Path, ref: str, base: str, build_args: dict[str, str], bundle: bytes
) -> None:
    """docker build, then squash to one layer: the lab's inner engines use vfs, which
    copies every layer in full, so one layer keeps the hosts' disks and load times small."""
    layered = f"{ref}-layered"
    with tempfile.TemporaryDirectory(prefix=f"llmlab-{folder.name}-") as tmp:
        context = Path(tmp)
        shutil.copytree(folder, context, dirs_exist_ok=True)
        (context / "lab-ca-bundle.crt").write_bytes(bundle)
        argv = ["docker", "build", "--pull=false", "-t", layered, "--build-arg", f"BASE={base}"]
        for key, value in sorted(build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        run([*argv, str(context)], extra_env={"DOCKER_BUILDKIT": "0"}, stdout=subprocess.DEVNULL)
    config = _image_config(layered)
    changes: list[str] = []
    if config.get("Entrypoint"):
        changes.append(f"ENTRYPOINT {_json(config['Entrypoint'])}")
    changes.append(f"CMD {_json(config.get('Cmd') or [])}")
    for env in config.get("Env") or []:
        key, _, value = env.partition("=")
        changes.append(f"ENV {key}={value}")
    if config.get("WorkingDir"):
        changes.append(f"WORKDIR {config['WorkingDir']}")
    if config.get("User"):
        changes.append(f"USER {config['User']}")
    for port in config.get("ExposedPorts") or {}:
        changes.append(f"EXPOSE {port}")
    container = run(["docker", "create", layered], capture=True).stdout.strip()
    try:
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        change_args = [arg for change in changes for arg in ("-c", change)]
        run(
            ["docker", "import", *change_args, "-", ref],
            stdin=export.stdout.fileno() if export.stdout else None,
            capture=True,
        )
        if export.wait() != 0:
            raise SystemExit(f"docker export of {layered} failed")
    finally:
        run(["docker", "rm", "-f", container], capture=True)
        run(["docker", "image", "rm", layered], capture=True, check=False)


def _image_config(ref: str) -> dict:
    out = run(["docker", "image", "inspect", "--format", "{{json .Config}}", ref], capture=True)
    return json.loads(out.stdout)


def _json(value: object) -> str:
    return json.dumps(value)
