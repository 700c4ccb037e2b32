//! Turning a [`Target`] into node names, from the fault's seeded draw.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::fault::Ctx;
use crate::roles::Roles;
use crate::spec::Target;

/// Salt that draws a link fault's receivers independently of its senders.
const TO_SALT: u64 = 0x746f_5f6e_6f64_6573;

/// A link fault's senders and receivers (`from`, `to`), resolved now; the nodes are asked
/// their roles only when a side names primaries or replicas.
///
/// # Errors
/// No node answered for roles, or a side resolves to nothing.
pub async fn resolve_links(
    ctx: &Ctx,
    from: &Target,
    to: &Target,
    draw: u64,
) -> Result<(Vec<String>, Vec<String>), String> {
    let by_role = |t: &Target| matches!(t, Target::Primaries | Target::Replicas);
    let roles = if by_role(from) || by_role(to) {
        Some(ctx.roles().await?)
    } else {
        None
    };
    let names = ctx.names();
    let from = resolve(from, None, &names, roles.as_ref(), draw)?;
    let to = resolve(to, None, &names, roles.as_ref(), draw ^ TO_SALT)?;
    Ok((from, to))
}

/// The nodes a target means right now.
///
/// `names` are all nodes in name order; `roles` is needed for `primaries` / `replicas`.
/// With `count`, that many are drawn from the candidates; otherwise `one` is one node,
/// `minority` the largest set short of half, `majority` the smallest set over half, and
/// the other targets all their candidates. The draw makes the choice repeatable: same
/// draw, same candidates, same nodes. The result is in name order.
///
/// # Errors
/// An unknown node name, or a role target without a role snapshot, or no candidates.
pub fn resolve(
    target: &Target,
    count: Option<usize>,
    names: &[String],
    roles: Option<&Roles>,
    draw: u64,
) -> Result<Vec<String>, String> {
    let n = names.len();
    let candidates: Vec<String> = match target {
        Target::One | Target::Minority | Target::Majority | Target::All => names.to_vec(),
        Target::Primaries => roles.ok_or("primaries: roles unknown")?.primaries.clone(),
        Target::Replicas => roles.ok_or("replicas: roles unknown")?.replicas.clone(),
        Target::Nodes(list) => {
            if let Some(bad) = list.iter().find(|x| !names.contains(x)) {
                return Err(format!(
                    "no node named {bad:?} (nodes: {})",
                    names.join(", ")
                ));
            }
            list.clone()
        }
    };
    if candidates.is_empty() {
        return Err(format!("target {target} matches no node right now"));
    }
    let size = match (count, target) {
        (Some(c), _) => c,
        (None, Target::One) => 1,
        (None, Target::Minority) => ((n - 1) / 2).max(1),
        (None, Target::Majority) => n / 2 + 1,
        (None, _) => candidates.len(),
    }
    .min(candidates.len());
    let mut pool = candidates;
    pool.sort_by_key(|x| node_order(x));
    pool.shuffle(&mut StdRng::seed_from_u64(draw));
    let mut chosen: Vec<String> = pool.into_iter().take(size).collect();
    chosen.sort_by_key(|x| node_order(x));
    Ok(chosen)
}

/// Sort key: `n2` before `n10`.
pub fn node_order(name: &str) -> (usize, String) {
    let digits: String = name.chars().filter(char::is_ascii_digit).collect();
    (digits.parse().unwrap_or(usize::MAX), name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn sizes_follow_the_target() {
        let all = names(6);
        assert_eq!(resolve(&Target::One, None, &all, None, 1).unwrap().len(), 1);
        assert_eq!(
            resolve(&Target::Minority, None, &all, None, 1)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            resolve(&Target::Majority, None, &all, None, 1)
                .unwrap()
                .len(),
            4
        );
        assert_eq!(resolve(&Target::All, None, &all, None, 1).unwrap(), all);
        assert_eq!(
            resolve(&Target::All, Some(2), &all, None, 1).unwrap().len(),
            2
        );
    }

    #[test]
    fn same_draw_same_nodes() {
        let all = names(6);
        for draw in 0..50 {
            assert_eq!(
                resolve(&Target::Minority, None, &all, None, draw),
                resolve(&Target::Minority, None, &all, None, draw)
            );
        }
        let picks: std::collections::HashSet<_> = (0..50)
            .map(|d| resolve(&Target::One, None, &all, None, d).unwrap())
            .collect();
        assert!(picks.len() > 3, "draws spread over the nodes");
    }

    #[test]
    fn roles_and_names() {
        let all = names(6);
        let roles = Roles::from_pairs(&[
            ("n1", None),
            ("n2", None),
            ("n3", None),
            ("n4", Some("n1")),
            ("n5", Some("n2")),
            ("n6", Some("n3")),
        ]);
        assert_eq!(
            resolve(&Target::Primaries, None, &all, Some(&roles), 3).unwrap(),
            vec!["n1", "n2", "n3"]
        );
        assert_eq!(
            resolve(&Target::Replicas, Some(1), &all, Some(&roles), 3)
                .unwrap()
                .len(),
            1
        );
        let named = Target::Nodes(vec!["n2".into(), "n10".into()]);
        assert!(resolve(&named, None, &all, None, 0)
            .unwrap_err()
            .contains("n10"));
        assert!(resolve(&Target::Primaries, None, &all, None, 0).is_err());
    }

    #[test]
    fn node_order_is_numeric() {
        let mut v = vec!["n10".to_string(), "n2".into(), "n1".into()];
        v.sort_by_key(|x| node_order(x));
        assert_eq!(v, vec!["n1", "n2", "n10"]);
    }
}
