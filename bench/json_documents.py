"""Benchmark: JSON documents (CloudTrail, a big array) decoded by the old whole-document parse
and by the streaming formats, side by side.

Generates a CloudTrail-like file (``{"Records": [...]}``, about ``--trail-mb`` MB) and a JSON
array of small objects (about ``--array-mb`` MB), both gzip, in a temporary directory. Each
measurement runs ``decode_object`` in a fresh subprocess, which reports its records, seconds
(decompression and decoding, start-up excluded) and peak RSS (``VmHWM``):

* **old**: the baseline code (commit dc770f2, orjson parse of the whole document and
  ``orjson.dumps`` per record), imported from ``--baseline`` (default /work/wt-base/src).
  Without it, a documented equivalent runs instead: ``orjson.loads`` of the whole
  decompressed document and ``orjson.dumps`` of each record (labelled ``old≈``).
* **new**: this tree's formats (``cloudtrail``, ``json``), streamed.

    python bench/json_documents.py                    # 50 MB trail, 100 MB array, once
    python bench/json_documents.py --repeat 3         # best of 3 per side
    python bench/json_documents.py --trail-mb 10 --array-mb 20

Figures only: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
BASELINE = Path("/work/wt-base/src")
_NAMES = ["GetObject", "PutObject", "AssumeRole", "DescribeInstances", "Decrypt", "CreateTags"]


def _event(rnd: random.Random, when: float) -> dict[str, object]:
    second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": f"AROA{rnd.randrange(10**6)}:session",
            "arn": f"arn:aws:sts::123456789012:assumed-role/role/s{rnd.randrange(100)}",
            "accountId": "123456789012",
            "sessionContext": {"attributes": {"creationDate": f"{second}Z", "mfa": "false"}},
        },
        "eventTime": f"{second}Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": rnd.choice(_NAMES),
        "awsRegion": "us-east-1",
        "sourceIPAddress": f"10.0.{rnd.randrange(256)}.{rnd.randrange(256)}",
        "userAgent": 'aws-sdk-java/1.12.0 Linux/5.10 ("quoted", ünïcode)',
        "requestParameters": {"bucketName": "b", "key": f"k/{rnd.randrange(10**9)}"},
        "responseElements": None,
        "additionalEventData": {"bytesTransferredOut": rnd.random() * 1e4},
        "requestID": f"R{rnd.randrange(10**12)}",
        "eventID": f"{rnd.getrandbits(128):032x}",
        "readOnly": True,
        "resources": [{"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::b/k/1"}],
        "eventType": "AwsApiCall",
        "managementEvent": False,
        "recipientAccountId": "123456789012",
    }


def write_trail(path: Path, mb: int) -> int:
    """A CloudTrail-like gzip file of about ``mb`` MB uncompressed; returns its events."""
    rnd = random.Random(7)
    count = written = 0
    start = 1_790_000_000.0
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(b'{"Records":[')
        while written < mb * 1_000_000:
            # A trail file spans minutes: events of a few hundred seconds, unordered.
            data = orjson.dumps(_event(rnd, start + rnd.random() * 600))
            out.write(b"," + data if count else data)
            written += len(data) + 1
            count += 1
        out.write(b"]}")
    return count


def write_array(path: Path, mb: int) -> int:
    """A gzip JSON array of small objects of about ``mb`` MB uncompressed; returns them."""
    rnd = random.Random(8)
    count = written = 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(b"[")
        while written < mb * 1_000_000:
            level = rnd.choice(["info", "warn", "error"])
            item = {"ts": 1_790_000_000_000 + count, "level": level, "msg": f"request {count}"}
            data = orjson.dumps({**item, "ms": rnd.random() * 100, "ok": True})
            out.write(b"," + data if count else data)
            written += len(data) + 1
            count += 1
        out.write(b"]")
    return count


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def measure(path: Path, fmt: str, equivalent: bool) -> None:
    """Child process: decode ``path`` once and print records, seconds and peak RSS as JSON."""
    began = time.perf_counter()
    records = 0
    if equivalent:
        doc = orjson.loads(gzip.decompress(path.read_bytes()))
        for record in doc["Records"] if fmt == "cloudtrail" else doc:
            orjson.dumps(record).decode()
            records += 1
    else:
        from logferry.codecs import DecodeContext, decode_object

        ctx = DecodeContext(path.name, 0)
        for chunk in decode_object(_chunks(path), ctx, fmt):
            records += len(chunk.lines)
    seconds = time.perf_counter() - began
    print(json.dumps({"records": records, "seconds": seconds, "peak_mb": _peak_mb()}))


def run(path: Path, fmt: str, src: Path | None) -> dict[str, float]:
    """One measurement in a fresh interpreter, with ``src`` (None: the equivalent) first."""
    args = [sys.executable, __file__, "--measure", str(path), fmt]
    env = {**os.environ, "PYTHONPATH": str(src or "")}
    if src is None:
        args.append("--equivalent")
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trail-mb", type=int, default=50, help="CloudTrail-like file, MB")
    ap.add_argument("--array-mb", type=int, default=100, help="JSON array, MB")
    ap.add_argument("--repeat", type=int, default=1, help="runs per side (best is shown)")
    ap.add_argument("--baseline", type=Path, default=BASELINE, help="src/ of the old code")
    ap.add_argument("--measure", nargs=2, metavar=("FILE", "FORMAT"), help=argparse.SUPPRESS)
    ap.add_argument("--equivalent", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), args.measure[1], args.equivalent)
        return
    old_src = args.baseline if (args.baseline / "logferry").is_dir() else None
    old_label = "old" if old_src else "old≈"
    with tempfile.TemporaryDirectory(prefix="logferry-json-bench-") as tmp:
        d = Path(tmp)
        docs = [
            ("cloudtrail", d / "trail.json.gz", write_trail, args.trail_mb),
            ("json", d / "array.json.gz", write_array, args.array_mb),
        ]
        t0 = time.perf_counter()
        for fmt, path, write, mb in docs:
            count = write(path, mb)
            print(f"{fmt:10} {count:>9,} records, {mb} MB, {path.stat().st_size / 1e6:.1f} MB gzip")
        print(f"generated in {time.perf_counter() - t0:.1f} s")
        print(f"old: {old_src or 'orjson.loads of the whole document + orjson.dumps per record'}")
        print(
            f"\n{'format':10} {'side':5} {'best s':>7} {'records/s':>11} {'peak MB':>8}"
            f" {'new/old time':>13}"
        )
        for fmt, path, _write, _mb in docs:
            best: dict[str, dict[str, float]] = {}
            for _ in range(args.repeat):
                # Alternate the sides, so both see the same load on a shared machine.
                for side, src in ((old_label, old_src), ("new", ROOT / "src")):
                    out = run(path, fmt, src)
                    if side not in best or out["seconds"] < best[side]["seconds"]:
                        best[side] = out
            for side, out in best.items():
                ratio = out["seconds"] / best[old_label]["seconds"]
                print(
                    f"{fmt:10} {side:5} {out['seconds']:7.2f} "
                    f"{out['records'] / out['seconds']:11,.0f} {out['peak_mb']:8.0f}"
                    f" {ratio if side == 'new' else 1.0:13.2f}"
                )
            if best["new"]["records"] != best[old_label]["records"]:
                print(f"  records differ: {best[old_label]['records']} vs {best['new']['records']}")
        print(f"\n({args.repeat} run(s) per side, best shown; each run is a fresh process;")
        print(" seconds cover decompression and decoding, not interpreter start-up;")
        print(" peak MB is the VmHWM of that process)")


if __name__ == "__main__":
    main()
