//! Human durations: `30s`, `15m`, `1h30m`, `7d`, `2w3d`, `1y6M`, and `0` for never.
//!
//! Grammar (case-sensitive): `0`, or one or more `INTEGER UNIT` parts with units in strictly
//! descending order, each at most once: `y` years, `M` months, `w` weeks, `d` days, `h` hours,
//! `m` minutes, `s` seconds. Months and years are calendar units added in UTC
//! (2026-01-31 + `1M` = 2026-02-28).

use jiff::Timestamp;

/// The grammar, quoted in every parse error.
pub const GRAMMAR: &str = "an integer and a unit, several in descending order (y, M, w, d, h, m, s), e.g. `30d`, `1h30m`, `1y6M`, or `0` for never";

/// A parsed duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HumanDuration {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
    pub minutes: u32,
    pub seconds: u32,
}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration `{input}`: expected {GRAMMAR}")]
    Syntax { input: String },
    #[error("duration `{input}` is too large")]
    Overflow { input: String },
}

impl HumanDuration {
    /// Parses `s` strictly (see the module docs).
    pub fn parse(s: &str) -> Result<Self, DurationError> {
        let _ = s;
        todo!()
    }

    /// `0`: never expires.
    pub fn is_never(&self) -> bool {
        *self == HumanDuration::default()
    }

    /// The instant `self` after `start` (calendar units in UTC), `None` for never.
    pub fn after(&self, start: Timestamp) -> Result<Option<Timestamp>, DurationError> {
        let _ = start;
        todo!()
    }

    /// The length as a fixed `std::time::Duration` when it has no calendar units (months,
    /// years); `None` otherwise. `0` gives `Some(ZERO)`.
    pub fn as_fixed(&self) -> Option<std::time::Duration> {
        todo!()
    }
}

impl std::fmt::Display for HumanDuration {
    /// Canonical form, e.g. `1y6M`, `2w3d`, `0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = f;
        todo!()
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
