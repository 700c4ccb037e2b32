"""The cluster clients of redis-py and of valkey-py (its fork: the same API under another
package name) behind the faultline adapter protocol. `redis_py.py` and `valkey_py.py` name
the package; this class drives either. Library defaults, then the scenario's
`client_config` as keyword arguments of the cluster client."""

import importlib
import importlib.metadata

import protocol


class Library:
    package = None  # "redis" or "valkey"
    cluster_class = None  # "RedisCluster" or "ValkeyCluster"
    label = None  # "redis-py" or "valkey-py"

    def __init__(self):
        self.client = None
        self.exceptions = importlib.import_module(self.package + ".exceptions")
        cluster = importlib.import_module(self.package + ".asyncio.cluster")
        self.node_class = cluster.ClusterNode
        self.client_class = getattr(cluster, self.cluster_class)

    def version(self):
        return importlib.metadata.version(self.package)

    async def connect(self, hello):
        if hello["mode"] != "cluster":
            raise ValueError(f"{self.label}'s adapter drives the cluster client only")
        nodes = [self.node_class(h, p) for h, p in protocol.addresses(hello)]
        self.client = self.client_class(startup_nodes=nodes, **hello.get("config") or {})
        await self.client.initialize()

    async def call(self, argv, key):
        return await self.client.execute_command(*argv)

    def classify(self, exc):
        # An error reply means the command did not run; ClusterError ("TTL exhausted")
        # comes after retries that may have sent it. (faultline records every error
        # reply but NOSCRIPT as indeterminate anyway: adapters/PROTOCOL.md.)
        if isinstance(exc, self.exceptions.ResponseError):
            return "fail"
        return "info"

    async def close(self):
        await self.client.aclose()
