"""Tracking URIs the harness accepts, checked in a second or two before anything is written:
a known scheme, an existing folder for a SQLite file, a server that answers. A server that is
down would otherwise be retried by MLflow for minutes."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from harness.errors import HarnessError

PROBE_SECONDS = 5  # a tracking server that does not answer /health within this is down
SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_uri(uri: str) -> None:
    """A tracking URI the harness can use, else a one-line HarnessError: a known scheme, an
    existing folder for SQLite, a server that answers within PROBE_SECONDS."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme not in SCHEMES:
        raise HarnessError(
            f"tracking URI {uri!r}: use sqlite:///PATH, http(s)://HOST:PORT of an MLflow server, or postgresql://..."
        )
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path and not Path(path).parent.is_dir():
            raise HarnessError(f"tracking URI {uri!r}: folder {Path(path).parent} does not exist")
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_SECONDS) as response:
                response.read(64)
        except urllib.error.HTTPError:
            return  # it answers: not every server exposes /health
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise HarnessError(f"tracking URI {uri}: no MLflow server answers ({reason})") from None


def sqlite_path(uri: str) -> str:
    """The file of a sqlite:/// URI, decoded as SQLAlchemy decodes it ('' for other URIs)."""
    if not uri.startswith("sqlite:///"):
        return ""
    return urllib.parse.unquote(uri.removeprefix("sqlite:///").split("?", 1)[0])


def sqlite_uri(path: Path) -> str:
    """The sqlite:/// URI of a file, '%' and '?' escaped: unescaped, SQLAlchemy reads '?' as
    the start of the query (a project in /tmp/q?x=1 had its store in /tmp/q) and decodes
    '%2e' ('/tmp/pct%2e%2e' became '/tmp/pct..'). Spaces, '#' and other characters need no
    escaping, and are left as they are (MLflow makes the file's folder from the raw text)."""
    text = str(path).replace("%", "%25").replace("?", "%3F")
    return f"sqlite:///{text}"


def default_tracking_uri(root: Path) -> str:
    """$MLFLOW_TRACKING_URI, or the SQLite store in <root>/mlruns (MLflow 3 drops the file store)."""
    local = sqlite_uri((Path(root) / "mlruns" / "mlflow.db").resolve()) + "?timeout=60"
    return os.environ.get("MLFLOW_TRACKING_URI") or local


def check_store_file(path: Path) -> None:
    """A store file that exists must be a regular file: a folder, a FIFO (SQLite would wait
    on it forever) or a link to a device is named as what it is, in one line."""
    if path.is_dir():
        raise HarnessError(f"tracking store {path}: is a folder, not an MLflow store file; move it aside")
    if (path.exists() or path.is_symlink()) and not path.is_file():
        raise HarnessError(
            f"tracking store {path}: not a regular file (a FIFO, a device or a broken link); move it aside"
        )


def require_store(root: Path, tracking_uri: Optional[str]) -> None:
    """For reading: a missing local store is a HarnessError, not a new empty one; a folder, a
    device or a FIFO in its place is named as what it is."""
    uri = tracking_uri or default_tracking_uri(root)
    if not uri.startswith("sqlite:"):
        return
    path = Path(sqlite_path(uri))
    check_store_file(path)
    if not path.is_file():
        raise HarnessError(f"no runs yet: {path} does not exist")
