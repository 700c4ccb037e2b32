//! A 30-node cluster (15 primaries x 1 replica, Valkey) forms with faultline's own
//! formation and agrees: every node answers, reports `cluster_state:ok`, knows all 30
//! with no handshake or failure flag, shows the same slot map and roles, and every
//! replica's link is up.

mod common;

use common::{with_cluster_lock, Cluster};
use faultline::scenario::FlavorName;

#[test]
fn thirty_nodes_form_and_agree() {
    with_cluster_lock(async {
        let mut c = Cluster::up(FlavorName::Valkey, 15, 1, 5000, false).await;
        assert_eq!(c.names().len(), 30);
        let layout = faultline::cluster::Layout::new(15, 1);
        let problem = c.admin.disagreement(Some(&layout)).await;
        assert!(problem.is_none(), "{problem:?}");
        eprintln!("30 nodes formed and agreed in {:.2} s", c.formed_in);
        c.finish();
    });
}
