//! Redis (7.0+): `redis-server`, Debian bookworm's package is 7.0.15.

use super::Flavor;

/// Redis.
pub struct Redis;

impl Flavor for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn default_binary(&self) -> &'static str {
        "redis-server"
    }

    fn install_hint(&self) -> &'static str {
        "apt-get install redis-server, or run scripts/install-deps"
    }
}
