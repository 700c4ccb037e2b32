//! How to reach nodes that ask for credentials: a live cluster (`faultline run --live`)
//! may want `AUTH` (a password, or an ACL user and password) and TLS (a CA to trust, and
//! a client certificate and key when it verifies clients).
//!
//! Every connection faultline opens goes through [`crate::query::connect`]; it looks the
//! address up here, so the workloads' clients, the observer, formation's admin and the
//! faults reach a protected node without knowing it is protected. Nodes faultline starts
//! itself are never registered and connect as before.
//!
//! The password and the TLS key live only in this process's memory: the `Debug` of
//! [`Credentials`] and [`Tls`] prints neither, and nothing here writes them anywhere. TLS
//! goes through the redis crate's native-tls backend (OpenSSL here).

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

/// TLS for a node, as PEM bytes: the CA that signed its certificate, and the client's own
/// certificate and key when the node verifies clients (`tls-auth-clients`).
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    /// The CA certificate(s) to trust.
    pub ca: Vec<u8>,
    /// Client certificate and key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_bytes", &self.ca.len())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

/// What a node asks of a connection.
#[derive(Debug, Clone, Default)]
struct NodeAccess {
    credentials: Option<Arc<Credentials>>,
    tls: Option<Arc<Tls>>,
}

/// Access by node address (`ip:port`).
static REGISTRY: LazyLock<RwLock<HashMap<String, NodeAccess>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

fn update<'a>(addrs: impl IntoIterator<Item = &'a str>, change: impl Fn(&mut NodeAccess)) {
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    for addr in addrs {
        change(map.entry(addr.to_string()).or_default());
    }
}

/// From now on, connections to `addrs` authenticate with `credentials`.
pub fn register<'a>(addrs: impl IntoIterator<Item = &'a str>, credentials: &Credentials) {
    let credentials = Arc::new(credentials.clone());
    update(addrs, |a| a.credentials = Some(credentials.clone()));
}

/// From now on, connections to `addrs` speak TLS with `tls`.
pub fn register_tls<'a>(addrs: impl IntoIterator<Item = &'a str>, tls: &Tls) {
    let tls = Arc::new(tls.clone());
    update(addrs, |a| a.tls = Some(tls.clone()));
}

/// Forgets the credentials and TLS of `addrs` (the end of a live run).
pub fn forget<'a>(addrs: impl IntoIterator<Item = &'a str>) {
    let mut map = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    for addr in addrs {
        map.remove(addr);
    }
}

fn lookup(addr: &str) -> Option<NodeAccess> {
    REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(addr)
        .cloned()
}

/// The credentials registered for `addr`, if any.
pub fn credentials(addr: &str) -> Option<Arc<Credentials>> {
    lookup(addr)?.credentials
}

/// A client for `addr` (`ip:port`): plain, or with its registered credentials and TLS.
///
/// # Errors
/// An address the client cannot parse, or TLS material it cannot use.
pub fn client(addr: &str) -> RedisResult<redis::Client> {
    let access = lookup(addr).unwrap_or_default();
    let scheme = if access.tls.is_some() {
        "rediss"
    } else {
        "redis"
    };
    let info = with_credentials(
        format!("{scheme}://{addr}/").into_connection_info()?,
        access.credentials.as_deref(),
    );
    match access.tls {
        None => redis::Client::open(info),
        Some(tls) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: tls
                    .client
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                root_cert: Some(tls.ca.clone()),
            },
        ),
    }
}

/// How to connect to `addr` (`ip:port`) without TLS: plain, or with its registered
/// credentials.
///
/// # Errors
/// An address the client cannot parse.
pub fn connection_info(addr: &str) -> RedisResult<ConnectionInfo> {
    let info = format!("redis://{addr}/").into_connection_info()?;
    Ok(with_credentials(info, credentials(addr).as_deref()))
}

fn with_credentials(info: ConnectionInfo, credentials: Option<&Credentials>) -> ConnectionInfo {
    {
        match credentials {
            None => info,
            Some(c) => {
                let mut settings = info.redis_settings().clone().set_password(&c.password);
                if let Some(user) = &c.username {
                    settings = settings.set_username(user);
                }
                info.set_redis_settings(settings)
            }
        }
    }
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
