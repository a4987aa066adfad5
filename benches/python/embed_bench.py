#!/usr/bin/env python3
"""Python peer of the Rust embedder benchmark.

Measures, on the same image files, the full embedding pipeline

    read file bytes -> Pillow decode -> convert("RGB") -> resize 224x224 bilinear
    -> (x - 127) / 128 as f32 NCHW -> onnxruntime run (CPU)

in images/s for every (batch size, intra-op threads) pair, plus the latency of a
single 640x480 pass (batch 1, H=480, W=640; model only) at each thread count.

Sessions use intra_op_num_threads=T, inter_op_num_threads=1 and sequential
execution, default graph optimisations (ORT_ENABLE_ALL).

Example:
    python benches/python/embed_bench.py --model models/efficientnet_lite0.onnx \
        --images models/testdata --json /tmp/embed_bench.json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import PIL
from PIL import Image

SIZE = 224
MEAN = np.float32(127.0)
SCALE = np.float32(128.0)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def collect_images(args_images: list[str], limit: int | None) -> list[Path]:
    files: list[Path] = []
    for item in args_images:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            raise SystemExit(f"not a file or directory: {item}")
    if limit is not None:
        files = files[:limit]
    if not files:
        raise SystemExit("no images found")
    return files


def load_into(path: Path, out: np.ndarray) -> None:
    """Full per-image pipeline, writing the normalised CHW tensor into `out`."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    hwc = np.asarray(rgb, dtype=np.float32)
    out[...] = ((hwc - MEAN) / SCALE).transpose(2, 0, 1)


def make_session(model: bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def bench_throughput(sess, input_name: str, files: list[Path], batch: int,
                     warmup: int, min_seconds: float, min_iters: int) -> dict:
    buf = np.empty((batch, 3, SIZE, SIZE), dtype=np.float32)
    cursor = 0

    def one_iteration() -> tuple[float, float]:
        nonlocal cursor
        t0 = time.perf_counter()
        for i in range(batch):
            load_into(files[cursor % len(files)], buf[i])
            cursor += 1
        t1 = time.perf_counter()
        sess.run(["embedding"], {input_name: buf})
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    for _ in range(warmup):
        one_iteration()
    pre = inf = 0.0
    iters = 0
    start = time.perf_counter()
    while True:
        p, i = one_iteration()
        pre += p
        inf += i
        iters += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and iters >= min_iters:
            break
    images = iters * batch
    return {
        "batch": batch,
        "iterations": iters,
        "images": images,
        "seconds": elapsed,
        "images_per_s": images / elapsed,
        "ms_per_image": 1000.0 * elapsed / images,
        "preprocess_ms_per_image": 1000.0 * pre / images,
        "inference_ms_per_image": 1000.0 * inf / images,
    }


def bench_latency_640x480(sess, input_name: str, files: list[Path], warmup: int,
                          min_seconds: float, min_runs: int) -> dict:
    with Image.open(files[0]) as im:
        rgb = im.convert("RGB").resize((640, 480), Image.Resampling.BILINEAR)
    x = ((np.asarray(rgb, dtype=np.float32) - MEAN) / SCALE).transpose(2, 0, 1)[None]
    x = np.ascontiguousarray(x)
    for _ in range(warmup):
        sess.run(["embedding"], {input_name: x})
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        sess.run(["embedding"], {input_name: x})
        times.append(1000.0 * (time.perf_counter() - t0))
    return {
        "height": 480,
        "width": 640,
        "batch": 1,
        "runs": len(times),
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "mean_ms": statistics.fmean(times),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description="Python peer of the Rust embedder benchmark")
    ap.add_argument("--model", required=True, type=Path, help="efficientnet_lite0.onnx")
    ap.add_argument("--images", required=True, nargs="+", help="image files and/or directories")
    ap.add_argument("--json", required=True, type=Path, help="where to write the results")
    ap.add_argument("--limit", type=int, default=None, help="use at most this many images")
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    ap.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    ap.add_argument("--min-seconds", type=float, default=3.0, help="timed loop length per configuration")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up iterations per configuration")
    args = ap.parse_args()

    files = collect_images(args.images, args.limit)
    batches = [int(b) for b in args.batches.split(",")]
    threads_list = [int(t) for t in args.threads.split(",")]
    model = args.model.read_bytes()

    env = {
        "python": sys.version.split()[0],
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }
    print(f"model {args.model} (sha256 {hashlib.sha256(model).hexdigest()[:16]}...), "
          f"{len(files)} images, onnxruntime {ort.__version__}, {env['cpu_count']} CPUs ({env['cpu']})")

    throughput = []
    latency = []
    for threads in threads_list:
        sess = make_session(model, threads)
        input_name = sess.get_inputs()[0].name
        for batch in batches:
            r = bench_throughput(sess, input_name, files, batch, args.warmup, args.min_seconds, min_iters=3)
            r["threads"] = threads
            throughput.append(r)
            print(f"  threads {threads} batch {batch:>3}: {r['images_per_s']:7.1f} img/s "
                  f"({r['ms_per_image']:.2f} ms/img; preprocess {r['preprocess_ms_per_image']:.2f}, "
                  f"inference {r['inference_ms_per_image']:.2f})", flush=True)
        lat = bench_latency_640x480(sess, input_name, files, args.warmup, args.min_seconds, min_runs=10)
        lat["threads"] = threads
        latency.append(lat)
        print(f"  threads {threads} 640x480: median {lat['median_ms']:.2f} ms over {lat['runs']} runs", flush=True)

    print()
    print("full pipeline (read -> decode -> RGB -> resize 224 bilinear -> normalise -> ort), images/s")
    header = "threads | " + " | ".join(f"batch {b:>2}" for b in batches) + " | 640x480 median ms"
    print(header)
    print("-" * len(header))
    for threads in threads_list:
        cells = []
        for batch in batches:
            r = next(x for x in throughput if x["threads"] == threads and x["batch"] == batch)
            cells.append(f"{r['images_per_s']:8.1f}")
        lat = next(x for x in latency if x["threads"] == threads)
        print(f"{threads:>7} | " + " | ".join(cells) + f" | {lat['median_ms']:17.2f}")

    result = {
        "benchmark": "embed_pipeline_python",
        "model": str(args.model),
        "model_sha256": hashlib.sha256(model).hexdigest(),
        "images": [str(f) for f in files],
        "pipeline": "read bytes -> Pillow decode -> RGB -> resize 224x224 BILINEAR -> (x-127)/128 f32 NCHW -> ort.run",
        "session": {"inter_op_num_threads": 1, "execution_mode": "sequential",
                    "graph_optimization_level": "ORT_ENABLE_ALL", "provider": "CPUExecutionProvider"},
        "min_seconds": args.min_seconds,
        "warmup": args.warmup,
        "environment": env,
        "throughput": throughput,
        "latency_640x480": latency,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
