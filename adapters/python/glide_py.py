"""Valkey GLIDE for Python (`GlideClusterClient`, a Rust core) behind the faultline
adapter protocol. Library defaults (request_timeout 250 ms, periodic topology checks), then
the scenario's `client_config` as keyword arguments of GlideClusterClientConfiguration."""

import importlib.metadata
import re

import glide
from glide import GlideClusterClient, GlideClusterClientConfiguration, NodeAddress

import protocol

# A server error reply starts with its code (READONLY, MOVED, CLUSTERDOWN, ERR ...).
SERVER_ERROR = re.compile(
    r"\b(READONLY|MOVED|ASK|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|LOADING|NOSCRIPT|WRONGTYPE|ERR|NOREPLICAS|BUSY)\b"
)


class Library:
    package = "valkey-glide"

    def __init__(self):
        self.client = None

    def version(self):
        return importlib.metadata.version(self.package)

    async def connect(self, hello):
        if hello["mode"] != "cluster":
            raise ValueError("GLIDE's adapter drives the cluster client only")
        addresses = [NodeAddress(h, p) for h, p in protocol.addresses(hello)]
        config = GlideClusterClientConfiguration(addresses, **hello.get("config") or {})
        self.client = await GlideClusterClient.create(config)

    async def call(self, argv, key):
        # Without a route, GLIDE routes a keyed command by its key, as its typed calls do.
        return await self.client.custom_command(argv)

    def classify(self, exc):
        if isinstance(exc, (glide.TimeoutError, glide.ConnectionError, glide.ClosingError)):
            return "info"
        if isinstance(exc, glide.RequestError) and SERVER_ERROR.search(str(exc)):
            return "fail"
        return "info"

    async def close(self):
        await self.client.close()


if __name__ == "__main__":
    protocol.serve(Library())
