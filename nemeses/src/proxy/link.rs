//! Which way a message travels, and on which connection.
//!
//! Between two nodes A and B there are two bus connections: the one A opened to B (A's
//! PINGs, MEETs and broadcasts to B travel on it, and B's PONGs answering them come back
//! on it) and the one B opened to A (the mirror image). A message is named by its sender,
//! its receiver and the node that opened the connection carrying it, so "the PONGs B sends
//! N on the connection N opened" is `Link { from: B, to: N, opened_by: N }`.

use std::fmt;

use serde::Serialize;

/// One direction of one bus connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Link {
    /// The sending node (`n2`), or the peer's address if the proxy could not tell.
    pub from: String,
    /// The receiving node.
    pub to: String,
    /// The node that opened the connection: `from` for its requests (PING, MEET, FAIL,
    /// UPDATE, votes asked), `to` for replies on the receiver's own connection (PONG).
    pub opened_by: String,
}

impl Link {
    /// A link from `from` to `to` on the connection `opened_by` opened.
    pub fn new(from: &str, to: &str, opened_by: &str) -> Link {
        Link {
            from: from.to_string(),
            to: to.to_string(),
            opened_by: opened_by.to_string(),
        }
    }

    /// Whether the message travels on the connection its sender opened.
    pub fn on_senders_connection(&self) -> bool {
        self.opened_by == self.from
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}->{} (opened by {})",
            self.from, self.to, self.opened_by
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_carrying_connection() {
        let ping = Link::new("n3", "n2", "n3");
        let pong = Link::new("n2", "n3", "n3");
        assert!(ping.on_senders_connection());
        assert!(!pong.on_senders_connection());
        assert_eq!(pong.to_string(), "n2->n3 (opened by n3)");
    }
}
