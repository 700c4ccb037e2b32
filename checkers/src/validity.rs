//! The three-valued verdict every checker returns.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// Whether a run showed the property a checker looks for.
///
/// Jepsen's model: a checker that could not decide (the run died before its final reads, a
/// key was never read) must not claim the run was fine, so "unknown" is its own verdict.
/// Serialized as JSON `true`, `false` or `"unknown"`, as `results.json` requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Validity {
    /// Everything checked held.
    Valid,
    /// The checker found a violation.
    Invalid,
    /// The checker could not decide either way.
    Unknown,
}

impl Validity {
    /// How bad a verdict is, for combining: invalid over unknown over valid.
    fn badness(self) -> u8 {
        match self {
            Validity::Valid => 0,
            Validity::Unknown => 1,
            Validity::Invalid => 2,
        }
    }

    /// The worse of two verdicts: one violation makes the whole run invalid, and one
    /// undecided check keeps an otherwise clean run from being called valid.
    pub fn worst(self, other: Validity) -> Validity {
        if other.badness() > self.badness() {
            other
        } else {
            self
        }
    }

    /// The worst of many verdicts.
    ///
    /// # Returns
    /// [`Validity::Valid`] for an empty iterator (nothing failed). Callers that must not
    /// call "nothing checked" valid, such as [`crate::Results`], handle emptiness first.
    pub fn combine<I: IntoIterator<Item = Validity>>(verdicts: I) -> Validity {
        verdicts.into_iter().fold(Validity::Valid, Validity::worst)
    }

    /// The word people read in summaries and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Invalid => "invalid",
            Validity::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValidityVisitor;
        impl Visitor<'_> for ValidityVisitor {
            type Value = Validity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"unknown\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Validity, E> {
                Ok(if v {
                    Validity::Valid
                } else {
                    Validity::Invalid
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Validity, E> {
                match v {
                    "unknown" => Ok(Validity::Unknown),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(ValidityVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Validity::*;

    #[test]
    fn invalid_beats_unknown_beats_valid() {
        for (a, b, w) in [
            (Valid, Valid, Valid),
            (Valid, Unknown, Unknown),
            (Unknown, Valid, Unknown),
            (Unknown, Invalid, Invalid),
            (Invalid, Unknown, Invalid),
            (Valid, Invalid, Invalid),
        ] {
            assert_eq!(a.worst(b), w, "{a} vs {b}");
        }
        assert_eq!(Validity::combine([]), Valid);
        assert_eq!(Validity::combine([Valid, Unknown, Valid]), Unknown);
        assert_eq!(Validity::combine([Unknown, Invalid, Valid]), Invalid);
    }

    #[test]
    fn json_form_is_true_false_unknown() {
        assert_eq!(serde_json::to_string(&Valid).unwrap(), "true");
        assert_eq!(serde_json::to_string(&Invalid).unwrap(), "false");
        assert_eq!(serde_json::to_string(&Unknown).unwrap(), "\"unknown\"");
        for v in [Valid, Invalid, Unknown] {
            let text = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<Validity>(&text).unwrap(), v);
        }
        assert!(serde_json::from_str::<Validity>("\"valid\"").is_err());
        assert!(serde_json::from_str::<Validity>("1").is_err());
    }
}
