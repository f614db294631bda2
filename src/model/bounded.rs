//! Integer settings in config files, range-checked while deserialising so that a bad value is
//! reported at its own line and column.

use serde::Deserialize;

/// An integer setting within `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub usize);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        match usize::try_from(n) {
            Ok(v) if (MIN..=MAX).contains(&n) => Ok(Bounded(v)),
            _ => Err(serde::de::Error::custom(format!("{n} is not between {MIN} and {MAX}"))),
        }
    }
}
