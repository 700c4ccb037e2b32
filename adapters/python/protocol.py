"""The faultline adapter protocol (adapters/PROTOCOL.md), shared by the Python adapters.

An adapter module supplies a Library: `connect(hello)` builds the library's client as an
application would (its defaults, then the scenario's `config` on top), `call(argv, key)`
runs one command through the library's generic command call, `classify(exc)` says
whether an exception certainly means the command did not run ("fail") or not ("info"),
and `close()` releases the client. This module reads the hello and op lines from stdin,
runs ops concurrently, bounds each by the op time-out, and writes one answer per op.
Anything unexpected goes to stderr, which faultline keeps in the run directory.
"""

import asyncio
import json
import os
import sys
import time
import traceback


def _jsonable(value):
    """A library's reply as JSON: bytes as text, sets and tuples as lists, True for OK."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {(_jsonable(k) if not isinstance(k, str) else k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def error_text(exc):
    """The exception's class and message: the class often carries the server's error code
    (redis-py strips READONLY from the text of ReadOnlyError)."""
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Adapter:
    def __init__(self, library):
        self.library = library
        # The protocol keeps the real stdout; fd 1 becomes stderr, so whatever a library
        # prints (GLIDE's Rust core logs to stdout) lands in the adapter's log instead.
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self.op_timeout = 1.0
        self.tasks = set()

    def write(self, obj):
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    async def run_op(self, op):
        start = time.monotonic_ns()
        answer = {"id": op["id"]}
        try:
            value = await asyncio.wait_for(
                self.library.call(op["argv"], op.get("key")), self.op_timeout
            )
            answer["type"] = "ok"
            answer["value"] = _jsonable(value)
        except asyncio.TimeoutError:
            answer["type"] = "info"
            answer["error"] = "timeout"
        except Exception as exc:  # the library's errors, whatever their class
            answer["type"] = self.library.classify(exc)
            answer["error"] = error_text(exc)
        answer["latency_us"] = (time.monotonic_ns() - start) // 1000
        self.write(answer)

    async def main(self):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        line = await reader.readline()
        if not line:
            return 0
        hello = json.loads(line)
        if hello.get("type") != "hello" or hello.get("protocol") != 1:
            self.write({"type": "error", "error": f"expected a protocol 1 hello, got {line[:200]!r}"})
            return 1
        self.op_timeout = hello["op_timeout_ms"] / 1000.0
        try:
            await self.library.connect(hello)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self.write({"type": "error", "error": f"connecting: {error_text(exc)}"})
            return 1
        self.write({
            "type": "hello",
            "protocol": 1,
            "library": self.library.package,
            "version": self.library.version(),
        })
        while True:
            line = await reader.readline()
            if not line:
                break
            op = json.loads(line)
            if op.get("type") != "op":
                print(f"ignoring a line that is not an op: {line[:200]!r}", file=sys.stderr)
                continue
            task = asyncio.ensure_future(self.run_op(op))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.op_timeout + 1)
        try:
            await asyncio.wait_for(self.library.close(), 2)
        except Exception as exc:
            print(f"closing the client: {error_text(exc)}", file=sys.stderr)
        return 0


def serve(library):
    """Runs the adapter for `library` until stdin closes; exits with its status."""
    sys.exit(asyncio.run(Adapter(library).main()))


def addresses(hello):
    """The hello's `ip:port` nodes as (host, port) pairs."""
    out = []
    for node in hello["nodes"]:
        host, _, port = node.rpartition(":")
        out.append((host, int(port)))
    return out
