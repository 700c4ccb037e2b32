//! Scalar types for scenario files that check their own bounds while being parsed, so a
//! bad value is reported by the YAML parser with its line, like a type error.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An integer that must lie in `MIN..=MAX`; checked while parsing so errors carry a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// The value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if v < 0 || (v as u64) < MIN || (v as u64) > MAX {
            return Err(serde::de::Error::custom(format!(
                "must be between {MIN} and {MAX}, got {v}"
            )));
        }
        Ok(Bounded(v as u64))
    }
}

impl<const MIN: u64, const MAX: u64> Serialize for Bounded<MIN, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A finite number greater than zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositiveF64(pub f64);

impl PositiveF64 {
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for PositiveF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v <= 0.0 {
            return Err(serde::de::Error::custom(format!(
                "must be a number greater than 0, got {v}"
            )));
        }
        Ok(PositiveF64(v))
    }
}

impl Serialize for PositiveF64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

/// A finite number of zero or more.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonNegativeF64(pub f64);

impl NonNegativeF64 {
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for NonNegativeF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v < 0.0 {
            return Err(serde::de::Error::custom(format!(
                "must be a number of 0 or more, got {v}"
            )));
        }
        Ok(NonNegativeF64(v))
    }
}

impl Serialize for NonNegativeF64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}
