"""redis-py's cluster client (`redis.asyncio.cluster.RedisCluster`) behind the faultline
adapter protocol (the driving code is `redis_family.py`, shared with valkey-py)."""

import protocol
import redis_family


class Library(redis_family.Library):
    package = "redis"
    cluster_class = "RedisCluster"
    label = "redis-py"


if __name__ == "__main__":
    protocol.serve(Library())
