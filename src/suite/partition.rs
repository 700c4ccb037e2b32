//! One shard of a suite: `hash:M/N` (by a hash of the case id, so a case stays on its
//! shard when others are added) or `slice:M/N` (every Nth case in file order, so shards
//! are even). M is 1-based. Either way the N shards are disjoint and cover every case.

use std::fmt;
use std::str::FromStr;

/// How cases are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// FNV-1a of the case id, modulo N.
    Hash,
    /// Case index in the suite, modulo N.
    Slice,
}

/// `--partition hash:M/N` or `slice:M/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// How.
    pub scheme: Scheme,
    /// This shard, 1..=count.
    pub shard: u32,
    /// How many shards.
    pub count: u32,
}

impl FromStr for Partition {
    type Err = String;

    fn from_str(s: &str) -> Result<Partition, String> {
        let usage =
            || format!("{s:?}: write hash:M/N or slice:M/N with 1 <= M <= N, e.g. hash:1/4");
        let (scheme, rest) = s.split_once(':').ok_or_else(usage)?;
        let scheme = match scheme {
            "hash" => Scheme::Hash,
            "slice" => Scheme::Slice,
            _ => return Err(usage()),
        };
        let (m, n) = rest.split_once('/').ok_or_else(usage)?;
        let shard: u32 = m.trim().parse().map_err(|_| usage())?;
        let count: u32 = n.trim().parse().map_err(|_| usage())?;
        if shard == 0 || count == 0 || shard > count {
            return Err(usage());
        }
        Ok(Partition {
            scheme,
            shard,
            count,
        })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Hash => "hash",
            Scheme::Slice => "slice",
        };
        write!(f, "{scheme}:{}/{}", self.shard, self.count)
    }
}

impl Partition {
    /// Whether the case with this id, at this index in the suite, is in this shard.
    pub fn contains(&self, index: usize, id: &str) -> bool {
        let bucket = match self.scheme {
            Scheme::Hash => fnv1a(id) % u64::from(self.count),
            Scheme::Slice => index as u64 % u64::from(self.count),
        };
        bucket == u64::from(self.shard - 1)
    }
}

/// 64-bit FNV-1a: stable across builds, platforms and Rust versions (std's hasher is not).
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_every_case_for_any_count() {
        let ids: Vec<String> = (0..57)
            .map(|i| format!("scenario-{i}@redis:7.0.{i}"))
            .collect();
        for scheme in ["hash", "slice"] {
            for n in 1..=12u32 {
                let mut owner = vec![0u32; ids.len()];
                for m in 1..=n {
                    let p: Partition = format!("{scheme}:{m}/{n}").parse().unwrap();
                    assert_eq!(p.to_string(), format!("{scheme}:{m}/{n}"));
                    for (i, id) in ids.iter().enumerate() {
                        if p.contains(i, id) {
                            owner[i] += 1;
                        }
                    }
                }
                assert!(owner.iter().all(|&o| o == 1), "{scheme} {n}: {owner:?}");
            }
        }
    }

    #[test]
    fn slices_are_even_and_hash_spreads() {
        let ids: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
        for m in 1..=4 {
            let p: Partition = format!("slice:{m}/4").parse().unwrap();
            assert_eq!(
                ids.iter()
                    .enumerate()
                    .filter(|(i, id)| p.contains(*i, id))
                    .count(),
                10
            );
            let h: Partition = format!("hash:{m}/4").parse().unwrap();
            assert!(
                ids.iter().enumerate().any(|(i, id)| h.contains(i, id)),
                "hash:{m}/4 empty"
            );
        }
    }

    #[test]
    fn bad_partitions_say_how_to_write_one() {
        for bad in [
            "hash:0/4",
            "hash:5/4",
            "slice:1/0",
            "mod:1/2",
            "hash:1",
            "hash:a/b",
            "1/2",
        ] {
            let e = bad.parse::<Partition>().unwrap_err();
            assert!(e.contains("hash:M/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }
}
