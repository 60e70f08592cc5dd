"""The cloud copy of a dataset: built locally (core/datasets/catalog.py, like the local
backend), then mirrored to gs://BUCKET/genml/datasets/NAME/ for the training jobs."""
from __future__ import annotations

import threading
from pathlib import Path

from core.backend import ProgressFn
from core.errors import CloudError, InvalidState
from core.vertex import preflight
from core.vertex import storage as gcs
from core.vertex.context import Context
from trainer.contract import DATASET_MANIFEST


def upload(ctx: Context, name: str, *, progress: ProgressFn | None = None,
           cancel: threading.Event | None = None) -> gcs.TransferStats:
    """Mirror a local dataset to the bucket; objects already there with the same CRC32C are skipped."""
    preflight.ready(ctx)
    ds = ctx.registry.get_dataset(name)
    local = Path(ds.path)
    if not (local / DATASET_MANIFEST).exists():
        raise InvalidState(f"The dataset {name!r} at {local} is incomplete (no {DATASET_MANIFEST}).",
                           "Build it again with `genml dataset add`.")
    preflight.billing_notice(ctx)
    return gcs.upload_dir(ctx.clients.storage, local, ctx.dataset_uri(name), progress=progress,
                          cancel=cancel, stage="upload dataset", delete_extra=True)


def remove_cloud_copy(ctx: Context, name: str) -> None:
    from google.api_core import exceptions as gexc
    ctx.settings.validate()
    bucket, prefix = gcs.split_uri(ctx.dataset_uri(name))
    try:
        for blob in list(ctx.clients.storage.list_blobs(bucket, prefix=prefix + "/")):
            blob.delete()
    except gexc.GoogleAPIError as exc:
        raise CloudError(f"Could not delete {ctx.dataset_uri(name)}: {exc}.", "Try again.") from exc
