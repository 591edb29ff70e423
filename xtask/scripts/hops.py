#!/usr/bin/env python3
"""Where a cross-node change spends its time, hop by hop.

Run the cluster workloads with the hop trace points on, then point this
at the bench's node logs:

    rm -f target/release/bench-cluster/*.log   # the nodes append to them
    PG_LOG="warn,pg_hop=trace" cargo xtask bench --registry-only
    python3 xtask/scripts/hops.py target/release/bench-cluster b

Each `op start` on node A (R3's `reg_t`, C1's `join_t`/`leave_t`) is
followed through A's log (the scope step queues the frame, a link writer
hands it to QUIC) and the observer's log (the record is read off the
stream, the frame applied, the monitor task receives the event). Times
are the logs' wall-clock stamps (one clock on one machine); each trace
line costs a few microseconds of its own, so the hops read a little
longer than an untraced run's. The first writer to start may be the one
to the other peer: the writer hop is a lower bound for this peer's.
"""

import bisect
import sys


def load(path):
    events = []
    with open(path) as f:
        for line in f:
            if "pg_hop" not in line:
                continue
            hours, minutes, seconds = line[11:26].split(":")
            t = (int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1e6
            events.append((t, line.split("pg_hop: ", 1)[1].strip()))
    return events


def first(events, start, stop, prefix, after=None):
    for t, message in events[start:stop]:
        if (after is None or t >= after) and message.startswith(prefix):
            return t
    return None


def main():
    directory, observer = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "b"
    a, seen = load(f"{directory}/a.log"), load(f"{directory}/{observer}.log")
    a_times, seen_times = [t for t, _ in a], [t for t, _ in seen]
    rows = []
    for t0, message in a:
        if not message.startswith("op start"):
            continue
        i, j = bisect.bisect_left(a_times, t0), bisect.bisect_left(seen_times, t0)
        queued = next((t for t, m in a[i : i + 40] if m.startswith("frame queued") and f"to={observer}" in m), None)
        write = queued and first(a, i, i + 40, "write start", queued)
        read = first(seen, j, j + 60, "record read")
        applied = read and first(seen, j, j + 60, "frame applied", read)
        event = first(seen, j, j + 60, "event received")
        if None in (queued, write, read, applied, event) or event < applied:
            continue
        rows.append((queued - t0, write - queued, read - write, applied - read, event - applied, event - t0))
    names = [
        "caller -> scope step -> frame queued",
        "queued -> link writer starts its write",
        "write -> record read on the observer",
        "record read -> frame applied",
        "applied -> monitor task has the event",
        "total",
    ]
    print(f"{len(rows)} samples (us)")
    for k, name in enumerate(names):
        v = sorted(r[k] for r in rows)
        if v:
            pct = lambda q: v[min(len(v) - 1, int(len(v) * q))]
            print(f"{name:40s} p50 {pct(0.5):7.1f}  p90 {pct(0.9):7.1f}  p99 {pct(0.99):7.1f}")


if __name__ == "__main__":
    main()
