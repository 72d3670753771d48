"""Synthetic IBM and AWS VPC flow-log objects, shaped like the real ones.

Deterministic for a given seed, so the demo regenerates the same objects.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

ACCOUNT = "713c783d9a507a53135fe6793c37cc74"
AWS_HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol "
    "packets bytes start end action log-status"
)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def ibm_objects(
    count: int, *, seed: int = 1, start: datetime | None = None
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(key, gzip bytes)`` IBM VPC flow-log objects, five minutes apart."""
    rng = random.Random(seed)
    t0 = start or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    vnic = f"0717-{rng.getrandbits(32):08x}-8ba2-4911-bada-66cb04f004f5"
    crn = f"crn%3Av1%3Abluemix%3Apublic%3Ais%3Aus-south%3Aa%2F{ACCOUNT}%3A%3Avpc%3Ar006-fc3e"
    for i in range(count):
        begin = t0 + timedelta(minutes=5 * i)
        end = begin + timedelta(minutes=5)
        flows = []
        for _ in range(rng.randint(0, 20)):
            fs = begin + timedelta(seconds=rng.randint(0, 280))
            sent, recv = rng.randint(60, 90000), rng.randint(60, 90000)
            flows.append(
                {
                    "start_time": _iso(fs),
                    "end_time": _iso(fs + timedelta(seconds=rng.randint(1, 20))),
                    "connection_start_time": _iso(fs),
                    "direction": rng.choice("IO"),
                    "action": rng.choice(["accepted", "accepted", "accepted", "rejected"]),
                    "initiator_ip": f"10.240.0.{rng.randint(2, 250)}",
                    "target_ip": rng.choice(
                        ["10.240.0.1", "161.26.0.10", f"52.1.2.{rng.randint(1, 250)}"]
                    ),
                    "initiator_port": rng.randint(1024, 65535),
                    "target_port": rng.choice([22, 53, 80, 443, 5432]),
                    "transport_protocol": rng.choice([6, 17]),
                    "ether_type": "IPv4",
                    "was_initiated": True,
                    "was_terminated": rng.random() < 0.5,
                    "bytes_from_initiator": sent,
                    "packets_from_initiator": sent // 800 + 1,
                    "bytes_from_target": recv,
                    "packets_from_target": recv // 800 + 1,
                    "cumulative_bytes_from_initiator": sent,
                    "cumulative_packets_from_initiator": sent // 800 + 1,
                    "cumulative_bytes_from_target": recv,
                    "cumulative_packets_from_target": recv // 800 + 1,
                }
            )
        doc = {
            "version": "0.0.1",
            "collector_crn": f"crn:v1:bluemix:public:is:us-south:a/{ACCOUNT}::flow-log-collector:r006-demo",
            "attached_endpoint_type": "vnic",
            "network_interface_id": vnic,
            "capture_start_time": _iso(begin),
            "capture_end_time": _iso(end),
            "state": "ok",
            "number_of_flow_logs": len(flows),
            "flow_logs": flows,
        }
        key = (
            f"ibm_vpc_flowlogs_v1/account={ACCOUNT}/region=us-south/vpc-id={crn}/"
            f"endpoint-type=vnics/vnic-id={vnic}/record-type=ingress/"
            f"year={begin:%Y}/month={begin:%m}/day={begin:%d}/hour={begin:%H}/"
            f"stream-id={begin:%Y%m%dT%H%M%SZ}/{i + 1:08d}.gz"
        )
        yield key, gzip.compress(orjson.dumps(doc), mtime=0)


def aws_objects(
    count: int, *, seed: int = 2, start: datetime | None = None
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(key, gzip bytes)`` AWS VPC flow-log objects (default v2 format, with header)."""
    rng = random.Random(seed)
    t0 = start or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    account = "123456789012"
    for i in range(count):
        begin = t0 + timedelta(minutes=5 * i)
        rows = [AWS_HEADER]
        eni = f"eni-{rng.getrandbits(40):010x}"
        for _ in range(rng.randint(1, 40)):
            s = int(begin.timestamp()) + rng.randint(0, 280)
            if rng.random() < 0.05:
                rows.append(f"2 {account} {eni} - - - - - - - {s} {s + 60} - NODATA")
                continue
            rows.append(
                f"2 {account} {eni} 10.0.{rng.randint(0, 3)}.{rng.randint(2, 250)} "
                f"172.31.{rng.randint(0, 3)}.{rng.randint(2, 250)} {rng.randint(1024, 65535)} "
                f"{rng.choice([22, 80, 443, 3306])} {rng.choice([6, 17])} {rng.randint(1, 90)} "
                f"{rng.randint(40, 90000)} {s} {s + 60} {rng.choice(['ACCEPT', 'ACCEPT', 'REJECT'])} OK"
            )
        key = (
            f"AWSLogs/{account}/vpcflowlogs/us-east-1/{begin:%Y/%m/%d}/"
            f"{account}_vpcflowlogs_us-east-1_fl-0123456789abcdef0_{begin:%Y%m%dT%H%MZ}_{i:04x}.log.gz"
        )
        yield key, gzip.compress(("\n".join(rows) + "\n").encode(), mtime=0)


def write_to_dir(directory: Path, objects: Iterator[tuple[str, bytes]]) -> int:
    """Write generated objects under ``directory`` (keys become paths); return the count."""
    n = 0
    for key, data in objects:
        path = directory / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        n += 1
    return n
