#!/usr/bin/env python3
"""A Python reference worker: what a team would write to tag uploads with the same model.

The yardstick of issue 16's throughput benchmark (`cargo bench -p autotag-bench --bench frames`,
`docs/benchmarks.md`): consume upload events (confluent-kafka, one consumer group), fetch each GIF
from S3 (boto3), decode it and sample 8 frames spread over its frames (Pillow: seek, convert to
RGB, bilinear resize of the centre square to 224 px), micro-batch the frames of up to
`--max-gifs` GIFs into one forward pass of the same TorchScript model cast to bf16, mean over a
GIF's frames, top 5 tags at 0.2 or above, publish a suggestion, commit the offsets after the
suggestions are acknowledged (at least once). The next micro-batch is fetched and decoded on a
thread while the model runs the current one (torch and Pillow's decoders release the GIL). Run
one process per core in one consumer group:

    .local/venv/bin/python tools/reference_worker.py --brokers 127.0.0.1:9092 --group ref \\
        --model-dir .local/models/efficientnet-lite0 [--ready-file F]

S3 settings come from the usual AWS variables (`AWS_ENDPOINT_URL_S3`, keys, region). A GIF that
cannot be fetched or decoded is answered with a dead letter. SIGTERM stops it after the batch in
hand. Needs `confluent-kafka` and `boto3` (installed into the venv by `scripts/bench`).
"""

import argparse
import io
import json
import os
import signal
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import boto3
import numpy as np
import torch
from confluent_kafka import Consumer, Producer, TopicPartition

from bench_pillow_decode import work  # tools/ is this script's folder

SIZE = 224


def frames_of(data, k):
    """The decode of `bench_pillow_decode.py` (autotag's index sampling before issue 16, Pillow's
    compositing, bilinear resize of the centre square) as one uint8 array [n, SIZE, SIZE, 3]."""
    _, images = work(data, k, SIZE)
    return np.stack([np.asarray(im) for im in images])


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--uploads", default="gif-uploads")
    ap.add_argument("--suggestions", default="gif-tag-suggestions")
    ap.add_argument("--dead-letters", default="gif-uploads-dlq")
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--max-gifs", type=int, default=4, help="GIFs per forward pass (micro-batch)")
    ap.add_argument("--max-wait-ms", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--ready-file", help="touched once the model is warm and partitions are assigned")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    with open(os.path.join(a.model_dir, "model.json"), encoding="utf-8") as f:
        meta = json.load(f)
    with open(os.path.join(a.model_dir, meta["output"]["tags_file"]), encoding="utf-8") as f:
        tags = json.load(f)
    model = torch.jit.load(os.path.join(a.model_dir, "model.pt"), map_location="cpu").eval()
    if a.precision == "bf16":
        model = model.to(torch.bfloat16)
    with torch.inference_mode():
        for n in (a.frames, a.frames * a.max_gifs):
            model(torch.zeros(n, SIZE, SIZE, 3, dtype=torch.uint8))
    model_ref = {"name": meta["name"], "version": meta["version"]}

    s3 = boto3.client("s3")
    consumer = Consumer({
        "bootstrap.servers": a.brokers, "group.id": a.group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
    })
    producer = Producer({"bootstrap.servers": a.brokers, "enable.idempotence": True, "linger.ms": 5})
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)

    def on_assign(_c, parts):
        if a.ready_file and parts:
            with open(a.ready_file, "w", encoding="utf-8") as f:
                f.write("ready\n")

    consumer.subscribe([a.uploads], on_assign=on_assign)
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    def prepare(msgs):
        """Fetch and decode a micro-batch (on a pool thread, while the model runs the previous one)."""
        gifs, frames = [], []
        for m in msgs:
            try:
                ev = json.loads(m.value())
                bucket, key = ev["s3_uri"][len("s3://"):].split("/", 1)
                data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                fr = frames_of(data, a.frames)
                gifs.append((ev, len(fr)))
                frames.append(fr)
            except Exception as e:  # a bad event or GIF: a dead letter, never a crash
                dl = {"schema_version": 1, "event_id": str(uuid.uuid4()), "reason": "decode_failed",
                      "message": str(e)[:500], "failed_at": now()}
                producer.produce(a.dead_letters, json.dumps(dl).encode(), on_delivery=delivered)
        return msgs, gifs, frames

    def infer_and_publish(msgs, gifs, frames):
        if frames:
            x = torch.from_numpy(np.concatenate(frames))
            with torch.inference_mode():
                scores = model(x).float().numpy()
            row = 0
            for ev, n in gifs:
                s = scores[row:row + n].mean(0)
                row += n
                top = [int(i) for i in np.argsort(-s, kind="stable")[:5] if s[i] >= 0.2]
                out = {
                    "schema_version": 1,
                    "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ref:{ev['event_id']}:{model_ref['version']}")),
                    "upload_event_id": ev["event_id"], "gif_id": ev["gif_id"], "model": model_ref,
                    "tags": [{"tag": tags[i], "score": round(float(s[i]), 4)} for i in top],
                    "frames_sampled": n, "frames_inferred": n, "source": "live", "produced_at": now(),
                }
                producer.produce(a.suggestions, json.dumps(out).encode(), key=ev["gif_id"].encode(),
                                 on_delivery=delivered)
        producer.flush()
        if failed:
            sys.exit(f"delivery failed: {failed[0]}")
        # Everything up to the last message of this batch is answered (messages are consumed in
        # order and batches finish in order).
        consumer.commit(offsets=[TopicPartition(m.topic(), m.partition(), m.offset() + 1) for m in msgs],
                        asynchronous=True)

    # Two stages: the next micro-batch is fetched and decoded while the model runs this one.
    pool = ThreadPoolExecutor(max_workers=1)
    pending = None
    while running or pending is not None:
        msgs = consumer.consume(num_messages=a.max_gifs, timeout=a.max_wait_ms / 1000.0) if running else []
        msgs = [m for m in msgs if m.error() is None]
        nxt = pool.submit(prepare, msgs) if msgs else None
        if pending is not None:
            infer_and_publish(*pending.result())
        pending = nxt
    consumer.close()


if __name__ == "__main__":
    main()
