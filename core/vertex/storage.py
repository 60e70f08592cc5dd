"""Cloud Storage: the job-dir/dataset Store for gs:// URIs and bulk upload/download.

Uploads compare each local file's CRC32C with the object already in the bucket and
skip matches, so an interrupted upload resumes by running it again; files go up in
parallel, and a folder's `manifest.json` goes last, so a dataset without one is
incomplete in the bucket exactly as on disk (docs/contracts.md).
"""
from __future__ import annotations

import base64
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from core.types import Progress, ProgressFn
from core.errors import CloudError, InvalidInput, StorageError
from trainer.contract import DATASET_MANIFEST, MODEL_INFO

_default_client: Any = None
_client_lock = threading.Lock()
LAST_FILES = (DATASET_MANIFEST, MODEL_INFO)      # written after everything they describe
CHUNK_SIZE = 8 * 1024 * 1024                    # resumable upload chunk (a multiple of 256 KiB)


def make_client(project: str, credentials: Any, endpoint: str = "") -> Any:
    """A google-cloud-storage client; an endpoint (or STORAGE_EMULATOR_HOST) points it at an emulator."""
    from google.cloud import storage
    kwargs: dict[str, Any] = {"project": project or None}
    if endpoint:
        from google.auth.credentials import AnonymousCredentials
        kwargs["client_options"] = {"api_endpoint": endpoint}
        kwargs["credentials"] = credentials or AnonymousCredentials()
    elif credentials is not None:
        kwargs["credentials"] = credentials
    try:
        return storage.Client(**kwargs)
    except Exception as exc:  # google.auth's DefaultCredentialsError, OSError on a bad key file
        from core.vertex.errors import CREDENTIALS_HINT
        raise CloudError(f"Cannot create a Cloud Storage client: {exc}.", CREDENTIALS_HINT) from exc


_default_factory: Callable[[], Any] | None = None


def set_default_client(client: Any) -> None:
    global _default_client
    _default_client = client


def set_default_factory(factory: Callable[[], Any] | None) -> None:
    """A Vertex backend registers how to make its client, so a job dir opened by URI alone
    (open_store) uses the profile's credentials and endpoint, made only when first needed."""
    global _default_factory
    _default_factory = factory


def default_client() -> Any:
    """The backend's client, else one from the environment (ADC or STORAGE_EMULATOR_HOST)."""
    global _default_client
    if _default_client is None and _default_factory is not None:
        return _default_factory()          # sets _default_client through Clients.storage
    with _client_lock:
        if _default_client is None:
            _default_client = make_client(os.environ.get("GOOGLE_CLOUD_PROJECT", ""), None)
        return _default_client


def split_uri(uri: str) -> tuple[str, str]:
    """gs://bucket/a/b -> ("bucket", "a/b")"""
    if not uri.startswith("gs://"):
        raise InvalidInput(f"{uri!r} is not a gs:// URI.", "Use gs://BUCKET/PATH.")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def crc32c_b64(path: Path) -> str:
    """The base64 big-endian CRC32C that GCS reports for an object."""
    import google_crc32c
    c = google_crc32c.Checksum()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            c.update(block)
    return base64.b64encode(c.digest()).decode("ascii")


def _gcs_error(exc: Exception, what: str) -> CloudError:
    from google.api_core import exceptions as gexc
    if isinstance(exc, gexc.Forbidden):
        return CloudError(f"{what}: permission denied ({exc.message}).",
                          "Grant the account Storage Object Admin on the bucket (roles/storage.objectAdmin).")
    if isinstance(exc, gexc.NotFound):
        return CloudError(f"{what}: not found ({exc.message}).",
                          "Check the bucket name in the profile (`genml vertex check`).")
    return CloudError(f"{what}: {exc}.", "Try again; if it persists, check `genml vertex check`.")


class GcsStore:
    """core.store.Store over gs://bucket/prefix: lets JobDir read a cloud job like a local one."""

    def __init__(self, uri: str, client: Any = None) -> None:
        self.uri = uri.rstrip("/")
        self.bucket_name, self.prefix = split_uri(self.uri)
        self._client = client

    @property
    def bucket(self) -> Any:
        return (self._client or default_client()).bucket(self.bucket_name)

    def _key(self, rel: str) -> str:
        return "/".join(p for p in (self.prefix, rel.strip("/")) if p)

    def _blob(self, rel: str) -> Any:
        return self.bucket.blob(self._key(rel))

    def exists(self, rel: str) -> bool:
        from google.api_core import exceptions as gexc
        try:
            if self._blob(rel).exists():
                return True
            return bool(list(self.bucket.list_blobs(prefix=self._key(rel) + "/", max_results=1)))
        except gexc.GoogleAPIError as exc:
            raise _gcs_error(exc, f"Reading {self.uri}/{rel}") from exc

    def read_bytes(self, rel: str) -> bytes:
        return self.read_range(rel, 0, None)

    def read_range(self, rel: str, start: int, end: int | None = None) -> bytes:
        from google.api_core import exceptions as gexc
        if end is not None and end <= start:
            return b""
        try:
            data: bytes = self._blob(rel).download_as_bytes(start=start or None,
                                                            end=None if end is None else end - 1)
            return data
        except gexc.NotFound as exc:
            raise FileNotFoundError(f"{self.uri}/{rel}") from exc
        except gexc.GoogleAPIError as exc:
            raise _gcs_error(exc, f"Reading {self.uri}/{rel}") from exc

    def size(self, rel: str) -> int:
        from google.api_core import exceptions as gexc
        try:
            blob = self.bucket.get_blob(self._key(rel))
        except gexc.GoogleAPIError as exc:
            raise _gcs_error(exc, f"Reading {self.uri}/{rel}") from exc
        if blob is None:
            raise FileNotFoundError(f"{self.uri}/{rel}")
        return int(blob.size or 0)

    def list(self, rel: str = "") -> list[str]:
        from google.api_core import exceptions as gexc
        key = self._key(rel)
        prefix = key + "/" if key else ""
        try:
            it = self.bucket.list_blobs(prefix=prefix, delimiter="/")
            names = [b.name[len(prefix):] for b in it if b.name != prefix]
            names += [p[len(prefix):].rstrip("/") for p in it.prefixes]
        except gexc.GoogleAPIError as exc:
            raise _gcs_error(exc, f"Listing {self.uri}/{rel}") from exc
        return sorted(n for n in set(names) if n)


@dataclass
class TransferStats:
    uploaded: int = 0
    skipped: int = 0
    deleted: int = 0
    bytes: int = 0


def remote_checksums(client: Any, uri: str) -> dict[str, str]:
    """Relative name -> crc32c of every object under a prefix, in one listing."""
    bucket, prefix = split_uri(uri)
    p = prefix + "/" if prefix else ""
    return {b.name[len(p):]: b.crc32c for b in client.list_blobs(bucket, prefix=p) if b.crc32c}


def upload_dir(client: Any, local_dir: Path, uri: str, *, progress: ProgressFn | None = None,
               cancel: threading.Event | None = None, workers: int = 8, stage: str = "upload",
               delete_extra: bool = False) -> TransferStats:
    """Mirror a local folder to gs://... in parallel; unchanged objects are skipped.

    With delete_extra, objects under the prefix that the folder no longer has (shards of an
    earlier build of the same dataset) are deleted before the LAST_FILES go up.
    """
    from google.api_core import exceptions as gexc
    local_dir = Path(local_dir)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    rels = [p.relative_to(local_dir).as_posix() for p in files]
    try:
        have = remote_checksums(client, uri)
    except gexc.GoogleAPIError as exc:
        raise _gcs_error(exc, f"Listing {uri}") from exc
    bucket_name, prefix = split_uri(uri)
    bucket = client.bucket(bucket_name)
    stats = TransferStats()
    lock = threading.Lock()
    todo: list[tuple[Path, str]] = []
    for path, rel in zip(files, rels):
        if have.get(rel) == crc32c_b64(path):
            stats.skipped += 1
        else:
            todo.append((path, rel))
    total = len(files)

    def report() -> None:
        if progress:
            progress(Progress(stage, stats.uploaded + stats.skipped, total, f"{stats.uploaded} uploaded, "
                              f"{stats.skipped} already there"))

    def put(path: Path, rel: str) -> None:
        if cancel is not None and cancel.is_set():
            return
        # 8 MiB chunks: a big shard goes up in requests a slow uplink finishes within the
        # client's timeout, and a failed chunk is retried alone
        blob = bucket.blob("/".join(p for p in (prefix, rel) if p), chunk_size=CHUNK_SIZE)
        try:
            blob.upload_from_filename(str(path), checksum="crc32c")
        except gexc.GoogleAPIError as exc:
            raise _gcs_error(exc, f"Uploading {path} to {uri}/{rel}") from exc
        except OSError as exc:
            raise StorageError(f"Cannot read {path}: {exc}.", "Check the file and run the command again; "
                               "what was uploaded already is kept.") from exc
        with lock:
            stats.uploaded += 1
            stats.bytes += path.stat().st_size
        report()

    report()
    first = [t for t in todo if t[1].rsplit("/", 1)[-1] not in LAST_FILES]
    last = [t for t in todo if t[1].rsplit("/", 1)[-1] in LAST_FILES]
    extra = sorted(set(have) - set(rels)) if delete_extra else []
    for batch in (first, last):
        if batch is last and extra:
            try:
                for rel in extra:
                    bucket.blob("/".join(p for p in (prefix, rel) if p)).delete()
            except gexc.NotFound:
                pass
            except gexc.GoogleAPIError as exc:
                raise _gcs_error(exc, f"Deleting stale objects under {uri}") from exc
            stats.deleted = len(extra)
        if not batch:
            continue
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(batch)))) as pool:
            futures = [pool.submit(put, p, r) for p, r in batch]
            for fut in as_completed(futures):
                fut.result()
        if cancel is not None and cancel.is_set():
            from core.errors import GenmlError
            raise GenmlError("Upload cancelled.", "Run it again to continue where it stopped.")
    return stats


def upload_file(client: Any, path: Path, uri: str) -> None:
    from google.api_core import exceptions as gexc
    bucket, key = split_uri(uri)
    try:
        client.bucket(bucket).blob(key).upload_from_filename(str(path), checksum="crc32c")
    except gexc.GoogleAPIError as exc:
        raise _gcs_error(exc, f"Uploading {path} to {uri}") from exc


def download_prefix(client: Any, uri: str, local_dir: Path,
                    want: Callable[[str], bool] | None = None, workers: int = 8) -> list[Path]:
    """Copy every object under gs://... into local_dir (atomically per file)."""
    from google.api_core import exceptions as gexc
    from core import atomic
    bucket, prefix = split_uri(uri)
    p = prefix + "/" if prefix else ""
    try:
        blobs = [b for b in client.list_blobs(bucket, prefix=p) if not b.name.endswith("/")]
    except gexc.GoogleAPIError as exc:
        raise _gcs_error(exc, f"Listing {uri}") from exc
    blobs = [b for b in blobs if want is None or want(b.name[len(p):])]
    out: list[Path] = []

    def get(blob: Any) -> Path:
        dest: Path = Path(local_dir) / blob.name[len(p):]
        try:
            atomic.write_bytes(dest, blob.download_as_bytes())
        except gexc.GoogleAPIError as exc:
            raise _gcs_error(exc, f"Downloading {blob.name}") from exc
        return dest

    if blobs:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(blobs)))) as pool:
            out = list(pool.map(get, blobs))
    return sorted(out)


def copy_prefix(client: Any, src_uri: str, dst_uri: str, last: str = "") -> int:
    """Copy every object under src_uri to the same relative name under dst_uri, server side
    (Cloud Storage rewrites: nothing is downloaded), objects named `last` after the others
    so a reader that tests for one sees the rest. Returns how many were copied."""
    from google.api_core import exceptions as gexc
    src_bucket, src = split_uri(src_uri)
    dst_bucket, dst = split_uri(dst_uri)
    try:
        blobs = [b for b in client.list_blobs(src_bucket, prefix=src + "/") if not b.name.endswith("/")]
        blobs.sort(key=lambda b: bool(last) and b.name.rsplit("/", 1)[-1] == last)
        source, target = client.bucket(src_bucket), client.bucket(dst_bucket)
        for blob in blobs:
            source.copy_blob(blob, target, dst + blob.name[len(src):])
    except gexc.GoogleAPIError as exc:
        raise _gcs_error(exc, f"Copying {src_uri} to {dst_uri}") from exc
    return len(blobs)
