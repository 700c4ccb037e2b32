"""What the adapter protocol costs: ops/s of one library driven directly against the same
library driven through its adapter process, measured in one run, on a cluster given by
its seed address (loopback or a faultline run's --keep cluster; never anything else).

    python3 overhead.py redis_py 127.0.0.1:7000 [--seconds 5] [--concurrency 16]

Both sides run `concurrency` asyncio workers issuing SADD of unique values to 32 keys for
`seconds`; the direct side calls the library's `call` in this process, the adapter side
writes op lines to the adapter's stdin and waits for its answers (JSON encoding, the pipe,
the adapter's per-op task: everything but faultline's recorder). Only ok ops count (a
library time-out under load is not one). Rounds alternate direct/adapter twice; the ratio
compares the medians. Prints one JSON line.
"""

import argparse
import asyncio
import importlib
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


async def direct(module, hello, seconds, concurrency):
    lib = importlib.import_module(module).Library()
    await lib.connect(hello)
    done = 0
    stop = time.monotonic() + seconds

    async def worker(w):
        nonlocal done
        i = 0
        while time.monotonic() < stop:
            key = f"ovh{(w + i) % 32}"
            try:
                await lib.call(["SADD", key, f"d{w}-{i}"], key)
                done += 1
            except Exception:  # a library time-out under load: not an ok op
                pass
            i += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    await lib.close()
    return done / seconds


async def through_adapter(module, hello, seconds, concurrency):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, os.path.join(HERE, f"{module}.py"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, limit=1 << 24,
    )
    proc.stdin.write((json.dumps(hello) + "\n").encode())
    await proc.stdin.drain()
    answer = json.loads(await proc.stdout.readline())
    assert answer["type"] == "hello", answer
    waiting = {}

    async def read():
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            a = json.loads(line)
            fut = waiting.pop(a["id"], None)
            if fut is not None:
                fut.set_result(a)

    reader = asyncio.ensure_future(read())
    done = 0
    next_id = 0
    stop = time.monotonic() + seconds

    async def worker(w):
        nonlocal done, next_id
        i = 0
        while time.monotonic() < stop:
            next_id += 1
            key = f"ovh{(w + i) % 32}"
            fut = asyncio.get_running_loop().create_future()
            waiting[next_id] = fut
            argv = ["SADD", key, f"a{w}-{i}"]
            op = {"type": "op", "id": next_id, "f": "sadd", "key": key, "value": argv[1:], "argv": argv}
            proc.stdin.write((json.dumps(op) + "\n").encode())
            await proc.stdin.drain()
            a = await fut
            done += a["type"] == "ok"
            i += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    proc.stdin.close()
    await proc.wait()
    reader.cancel()
    return done / seconds


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("module")
    p.add_argument("seed")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    hello = {"type": "hello", "protocol": 1, "client": args.module, "mode": "cluster",
             "nodes": [args.seed], "op_timeout_ms": 1000, "config": {}}
    d, a = [], []
    for _ in range(2):
        d.append(await direct(args.module, hello, args.seconds, args.concurrency))
        a.append(await through_adapter(args.module, hello, args.seconds, args.concurrency))
    print(json.dumps({
        "library": args.module,
        "concurrency": args.concurrency,
        "seconds_per_round": args.seconds,
        "direct_ops_per_s": [round(x) for x in d],
        "adapter_ops_per_s": [round(x) for x in a],
        "adapter_over_direct": round(statistics.median(a) / statistics.median(d), 3),
    }))


if __name__ == "__main__":
    asyncio.run(main())
