//! Valkey (8.0+): `valkey-server`, from bookworm-backports (8.0.1) on Debian bookworm.
//! It reads Redis's config names, so the common config serves.

use super::Flavor;

/// Valkey.
pub struct Valkey;

impl Flavor for Valkey {
    fn name(&self) -> &'static str {
        "valkey"
    }

    fn default_binary(&self) -> &'static str {
        "valkey-server"
    }

    fn install_hint(&self) -> &'static str {
        "apt-get install -t bookworm-backports valkey-server, or run scripts/install-deps"
    }
}
