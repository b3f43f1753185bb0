"""The data cache: checksummed files under `DLCORE_DATA`, downloaded atomically.

Every file is verified by md5 after download *and* on every cache hit; downloads are
written to a temporary file and renamed into place only when complete, so the cache is
never half-written. A mirror that fails, or serves a corrupt file, is skipped for the
next one.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import platformdirs


class DataUnavailableError(RuntimeError):
    """A file is neither in the cache nor downloadable (e.g. offline)."""


class ChecksumError(RuntimeError):
    """A file's md5 differs from the published one."""


class CorruptDownloadError(DataUnavailableError, ChecksumError):
    """No mirror served the file: at least one served bytes with the wrong md5 (caught
    both as `DataUnavailableError`, so offline fallbacks still apply, and as
    `ChecksumError`)."""


class CorruptFileError(ValueError):
    """A cached file has the right name but not the right layout (e.g. a truncated IDX
    file); delete it and load again to re-download."""


# ------------------------------------------------------------ the cache and its files


def data_dir() -> Path:
    """The data cache: `$DLCORE_DATA`, else the user cache directory (e.g.
    ~/.cache/dlcore)."""
    env = os.environ.get("DLCORE_DATA")
    return (
        Path(env).expanduser()
        if env
        else Path(platformdirs.user_cache_dir("dlcore")) / "data"
    )


def derived_dir() -> Path:
    """A writable place for files the book derives (decoded arrays); never inside
    DLCORE_DATA, which may be a shared read-only mirror."""
    return Path(platformdirs.user_cache_dir("dlcore")) / "derived"


def file_digest(path: str | Path, algorithm: str = "md5", chunk: int = 1 << 22) -> str:
    """The hex digest (`hashlib` algorithm name) of a file's bytes, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def md5sum(path: Path) -> str:
    return file_digest(path, "md5")


def verify(path: Path, md5: str) -> Path:
    """Raise `ChecksumError` unless `path` has the given md5."""
    got = md5sum(path)
    if got != md5:
        raise ChecksumError(
            f"{path}: md5 {got}, expected {md5}. The file is corrupt or not the "
            "published one; delete it and load again to re-download."
        )
    return path


@dataclass(frozen=True)
class RemoteFile:
    """A cached file: `name` relative to the data dir, its md5, and where it can be
    downloaded. When `gz_md5` is set the URLs serve a gzip file (with that md5) to
    decompress."""

    name: str
    md5: str
    urls: tuple[str, ...]
    gz_md5: str | None = None


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        status = getattr(response, "status", None)  # None for file:// URLs
        if status is not None and status != 200:
            raise urllib.error.HTTPError(
                url, status, f"HTTP {status}", response.headers, None
            )
        with open(dest, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)


def _md5_problem(path: Path, md5: str, what: str) -> str | None:
    """None if `path` has the md5, else a one-line description of the mismatch."""
    got = md5sum(path)
    return None if got == md5 else f"{what} md5 {got}, expected {md5}"


def _download_verified(url: str, file: RemoteFile, tmp: Path) -> tuple[Path, str]:
    """Download `url` into the folder `tmp`, decompress if needed, and check the md5s.
    Returns (path, "") on success, or (path, what was wrong) for a corrupt download;
    network errors propagate."""
    raw = tmp / "download"
    _download(url, raw)
    if file.gz_md5 is not None:
        if problem := _md5_problem(raw, file.gz_md5, "gzip file"):
            return raw, problem
        unpacked = tmp / "unpacked"
        try:
            with gzip.open(raw, "rb") as src, open(unpacked, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError) as err:  # BadGzipFile is an OSError
            return raw, f"gzip file does not decompress ({err})"
        raw = unpacked
    return raw, _md5_problem(raw, file.md5, "file") or ""


def fetch(file: RemoteFile, root: Path | None = None) -> Path:
    """The verified local path of `file`, downloaded (atomically) if it is not cached.

    The mirrors in `file.urls` are tried in order; one that cannot be reached, or that
    serves a file whose md5 is not the published one, is skipped for the next. Raises
    `DataUnavailableError` when no mirror delivers (`CorruptDownloadError`, also a
    `ChecksumError`, when some mirror served corrupt bytes) and when there are no
    mirrors; nothing is left in the cache then.
    """
    root = root or data_dir()
    target = root / file.name
    if target.exists():
        return verify(target, file.md5)
    gz = " and decompress it (gunzip)" if file.gz_md5 else ""
    where = (
        f"(the cache is $DLCORE_DATA, now {root}; "
        "the book's offline mirror is ../shared/data)."
    )
    if not file.urls:
        raise DataUnavailableError(
            f"{file.name} is not in the data cache and has no download URL "
            f"(an empty mirror list).\nPut the file at {target}\n{where}"
        )
    errors, corrupt = [], []
    target.parent.mkdir(parents=True, exist_ok=True)
    for url in file.urls:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".part-") as tmp:
            try:
                path, problem = _download_verified(url, file, Path(tmp))
            except (urllib.error.URLError, OSError, TimeoutError, ValueError) as err:
                errors.append(f"{url}: {err}")
                continue
            if problem:
                corrupt.append(f"{url}: {problem}")
                continue
            os.replace(path, target)  # atomic: the cache never holds half a file
        return target
    error = CorruptDownloadError if corrupt else DataUnavailableError
    raise error(
        f"{file.name} is not in the data cache and could not be downloaded "
        f"({'; '.join(errors + corrupt)}).\n"
        f"Download {file.urls[0]}{gz}, and put it at {target}\n{where}"
    )
