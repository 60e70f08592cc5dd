"""Prediction speed: embedding -> image, in-process and over REST on 127.0.0.1.

    .venv/bin/python benchmarks/predict.py [--model-dir DIR] [--requests 300]

Without --model-dir it exports an UNTRAINED seed-preset model (64x64, 100-d embedding,
the seed's 64-128-256-512 decoder) into a temp dir: speed does not depend on the weights.

Figures (targets from issue 4, on the 2-core dev machine):
  in-process p50 at batch 1      <= 10 ms    (Predictor.predict: parse + decode + PNG + base64)
  batched throughput at batch 64 >= 500 images/s
  REST round trip p50 at batch 1 <= 25 ms    (http.client keep-alive -> `genml serve` code in a child process)
  REST requests/s with 8 concurrent clients (no target; reported)
Baseline measured in the same run: the bare SavedModel signature call (`serving_default`
with a tf.constant), so the overhead of genml's layers shows as a ratio.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from serving import export_untrained, pct, run_threads, served   # benchmarks/serving.py (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timeit(fn, n: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    model_dir = args.model_dir or export_untrained(Path(tmp.name), "seed")
    import tensorflow as tf

    from core.predict import SavedModelPredictor
    p = SavedModelPredictor(model_dir)
    E = p.embedding_size
    rng = np.random.default_rng(0)
    z1 = rng.standard_normal((1, E)).astype(np.float32)
    z64 = rng.standard_normal((64, E)).astype(np.float32)
    inst1 = [{"embeddings": z1[0].tolist(), "key": "0"}]
    inst64 = [{"embeddings": z.tolist(), "key": str(i)} for i, z in enumerate(z64)]
    n = args.requests
    print(f"model: {model_dir} ({p.image_size}x{p.image_size}, embedding {E}); cores: {os.cpu_count()}; "
          f"tf {tf.__version__}; load average {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")

    sig = p._generate  # the baseline is the bare signature
    base = timeit(lambda: sig(embeddings=tf.constant(z1), key=tf.constant(["0"])), n)
    raw = timeit(lambda: p.generate(z1), n)
    full = timeit(lambda: p.predict(inst1), n)
    print(f"baseline  bare serving_default call, batch 1: p50 {pct(base, 50):6.2f} ms  p99 {pct(base, 99):6.2f} ms")
    print(f"in-proc   Predictor.generate (uint8), batch 1: p50 {pct(raw, 50):6.2f} ms  p99 {pct(raw, 99):6.2f} ms")
    print(f"in-proc   Predictor.predict (PNG b64), batch 1: p50 {pct(full, 50):6.2f} ms  p99 {pct(full, 99):6.2f} ms"
          f"   target <= 10 ms: {pct(full, 50) / 10:.2f}x of budget; {pct(full, 50) / pct(base, 50):.2f}x baseline")

    reps = max(10, n // 10)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    t64 = timeit(lambda: p.generate(z64), reps, warmup=3)
    share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    tp64 = timeit(lambda: p.predict(inst64), reps, warmup=3)
    ips_raw = 64_000 / statistics.median(t64)
    ips_png = 64_000 / statistics.median(tp64)
    print(f"batch 64  Predictor.generate: {ips_raw:7.0f} images/s"
          f"   Predictor.predict (PNG b64): {ips_png:7.0f} images/s"
          f"   target >= 500: {ips_png / 500:.2f}x")
    print(f"          (this process got {share:.2f} of {os.cpu_count()} cores during the batch-64 runs; "
          f"decoder ~104 M multiply-adds/image -> {ips_raw * 0.208:.0f} GFLOP/s)")

    with served(model_dir) as port:
        body = json.dumps({"instances": inst1}).encode()
        headers = {"Content-Type": "application/json"}

        def client() -> http.client.HTTPConnection:
            return http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        conn = client()

        def one(c: http.client.HTTPConnection = conn) -> None:
            c.request("POST", "/v1/models/bench:predict", body, headers)
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status

        rest = timeit(one, n)
        print(f"REST      round trip, batch 1, keep-alive: p50 {pct(rest, 50):6.2f} ms  p99 {pct(rest, 99):6.2f} ms"
              f"   target <= 25 ms: {pct(rest, 50) / 25:.2f}x of budget;"
              f" {pct(rest, 50) / pct(full, 50):.2f}x in-process")

        per = max(20, n // 4)
        done = []

        def worker() -> None:
            c = client()
            for _ in range(per):
                one(c)
            done.append(per)

        t = time.perf_counter()
        run_threads(worker, 8)
        wall = time.perf_counter() - t
        print(f"REST      8 concurrent clients, batch 1: {sum(done) / wall:7.0f} requests/s "
              f"({sum(done)} requests in {wall:.1f} s)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
