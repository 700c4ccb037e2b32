"""redis-py's cluster client (`redis.asyncio.cluster.RedisCluster`) behind the faultline
adapter protocol. Library defaults, then the scenario's `client_config` as keyword
arguments of RedisCluster."""

import importlib.metadata

import redis.exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster

import protocol


class Library:
    package = "redis"

    def __init__(self):
        self.client = None

    def version(self):
        return importlib.metadata.version(self.package)

    async def connect(self, hello):
        if hello["mode"] != "cluster":
            raise ValueError("redis-py's adapter drives the cluster client only")
        nodes = [ClusterNode(h, p) for h, p in protocol.addresses(hello)]
        self.client = RedisCluster(startup_nodes=nodes, **hello.get("config") or {})
        await self.client.initialize()

    async def call(self, argv, key):
        return await self.client.execute_command(*argv)

    def classify(self, exc):
        # An error reply means the command did not run; ClusterError ("TTL exhausted")
        # comes after retries that may have sent it.
        if isinstance(exc, rex.ResponseError):
            return "fail"
        return "info"

    async def close(self):
        await self.client.aclose()


if __name__ == "__main__":
    protocol.serve(Library())
