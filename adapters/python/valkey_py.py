"""valkey-py's cluster client (`valkey.asyncio.cluster.ValkeyCluster`) behind the faultline
adapter protocol (the driving code is `redis_family.py`, shared with redis-py)."""

import protocol
import redis_family


class Library(redis_family.Library):
    package = "valkey"
    cluster_class = "ValkeyCluster"
    label = "valkey-py"


if __name__ == "__main__":
    protocol.serve(Library())
