//! How to reach nodes that ask for credentials: a live cluster (`faultline run --live`)
//! may want `AUTH` (a password, or an ACL user and password).
//!
//! Every connection faultline opens goes through [`crate::query::connect`]; it looks the
//! address up here, so the workloads' clients, the observer, formation's admin and the
//! faults reach a protected node without knowing it is protected. Nodes faultline starts
//! itself are never registered and connect as before.
//!
//! The password lives only in this process's memory: [`Credentials`]' `Debug` does not
//! print it, and nothing here writes it anywhere.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use redis::{ConnectionInfo, IntoConnectionInfo, RedisResult};

/// `AUTH` for a node: a password, with an ACL user or for the default user.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user; `None` authenticates the default user (`requirepass`).
    pub username: Option<String>,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials by node address (`ip:port`).
static REGISTRY: LazyLock<RwLock<HashMap<String, Arc<Credentials>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// From now on, connections to `addrs` authenticate with `credentials`.
pub fn register<'a>(addrs: impl IntoIterator<Item = &'a str>, credentials: &Credentials) {
    let credentials = Arc::new(credentials.clone());
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    for addr in addrs {
        map.insert(addr.to_string(), credentials.clone());
    }
}

/// Forgets the credentials of `addrs` (the end of a live run).
pub fn forget<'a>(addrs: impl IntoIterator<Item = &'a str>) {
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    for addr in addrs {
        map.remove(addr);
    }
}

/// The credentials registered for `addr`, if any.
pub fn credentials(addr: &str) -> Option<Arc<Credentials>> {
    REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(addr)
        .cloned()
}

/// How to connect to `addr` (`ip:port`): plain, or with its registered credentials.
///
/// # Errors
/// An address the client cannot parse.
pub fn connection_info(addr: &str) -> RedisResult<ConnectionInfo> {
    let info = format!("redis://{addr}/").into_connection_info()?;
    Ok(match credentials(addr) {
        None => info,
        Some(c) => {
            let mut settings = info.redis_settings().clone().set_password(&c.password);
            if let Some(user) = &c.username {
                settings = settings.set_username(user);
            }
            info.set_redis_settings(settings)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_addresses_authenticate_and_others_do_not() {
        let c = Credentials {
            username: Some("fl".into()),
            password: "s3cret".into(),
        };
        register(["10.1.2.3:7000"], &c);
        let info = connection_info("10.1.2.3:7000").unwrap();
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().username(), Some("fl"));
        let other = connection_info("10.1.2.3:7001").unwrap();
        assert_eq!(other.redis_settings().password(), None);
        assert!(!format!("{c:?}").contains("s3cret"));
        forget(["10.1.2.3:7000"]);
        assert!(credentials("10.1.2.3:7000").is_none());
    }
}
