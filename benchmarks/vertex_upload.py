"""Dataset upload to Cloud Storage: parallel vs serial, and a resumed upload vs a full one.

Runs against gcp-storage-emulator on 127.0.0.1 (no cloud). The emulator serves one
request at a time, so the parallel figure here understates what 8 connections give
against real GCS; the resumed-upload ratio (one listing + local CRC32C vs sending every
byte) is the figure this benchmark is for.

    .venv/bin/python benchmarks/vertex_upload.py [--files 40] [--size-kb 512]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.vertex import storage as gcs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--size-kb", type=int, default=512)
    a = ap.parse_args()
    from gcp_storage_emulator.server import create_server
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    endpoint = f"http://127.0.0.1:{server._api._httpd.server_address[1]}"
    client = gcs.make_client("bench", None, endpoint)
    client.create_bucket("bench")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        for i in range(a.files):
            (src / f"train-{i:05d}-of-{a.files:05d}.tfrecord").write_bytes(os.urandom(a.size_kb * 1024))
        (src / "manifest.json").write_text("{}")
        mb = (a.files * a.size_kb) / 1024

        def timed(uri: str, workers: int) -> float:
            t = time.perf_counter()
            gcs.upload_dir(client, src, uri, workers=workers)
            return time.perf_counter() - t

        serial = timed("gs://bench/serial", 1)
        parallel = timed("gs://bench/parallel", 8)
        resumed = timed("gs://bench/parallel", 8)
    server.stop()
    print(f"dataset: {a.files + 1} files, {mb:.1f} MiB")
    print(f"baseline  serial upload (1 worker):  {serial:7.3f} s  ({mb / serial:6.1f} MiB/s)")
    print(f"parallel upload (8 workers):         {parallel:7.3f} s  ({mb / parallel:6.1f} MiB/s)  "
          f"ratio vs baseline {serial / parallel:5.2f}x")
    print(f"resumed upload (all objects match):  {resumed:7.3f} s  ratio vs baseline {serial / resumed:5.1f}x")


if __name__ == "__main__":
    main()
