//! Human durations: `30s`, `15m`, `1h30m`, `7d`, `2w3d`, `1y6M`, and `0` for never.
//!
//! Grammar (case-sensitive): `0`, or one or more `INTEGER UNIT` parts with units in strictly
//! descending order, each at most once: `y` years, `M` months, `w` weeks, `d` days, `h` hours,
//! `m` minutes, `s` seconds. Months and years are calendar units added in UTC
//! (2026-01-31 + `1M` = 2026-02-28).
//!
//! Strictness, so that a duration means exactly one thing:
//! - each INTEGER is ASCII digits without sign, without a leading zero and not zero (`07d`,
//!   `0d` and `1h0m` are refused; `0` on its own is the only spelling of "never");
//! - no whitespace, no fractions, no sign, nothing after the last unit;
//! - values that do not fit (`u32`) or that no calendar can add (more than jiff's span limits,
//!   e.g. `20000y`) are refused as [`DurationError::Overflow`]; adding a duration that would go
//!   past the year 9999 is an error too, never a token that does not expire.
//!
//! `nom` reads the grammar; where it stops, a small diagnosis of the rest names the exact
//! reason (a sign, a fraction, a space, a capital unit, ...), and the checks that need the
//! whole list (order, repeats, zero parts, leading zeros, size) run on the parts it read.

use jiff::{Span, Timestamp, tz::TimeZone};
use nom::{
    IResult, Parser,
    character::complete::{alpha0, digit0, digit1, one_of, satisfy},
    combinator::not,
    multi::many0,
    sequence::terminated,
};

/// The grammar, quoted in every parse error.
pub const GRAMMAR: &str = "durations are an integer and a unit, several in descending order (y years, M months, w weeks, d days, h hours, m minutes, s seconds), e.g. `30d`, `1h30m`, `1y6M`, or `0` for never";

/// Units, largest first.
const UNITS: [char; 7] = ['y', 'M', 'w', 'd', 'h', 'm', 's'];

/// Unit names, singular and plural, in the order of [`UNITS`].
const UNIT_WORDS: [(&str, &str); 7] = [
    ("year", "years"),
    ("month", "months"),
    ("week", "weeks"),
    ("day", "days"),
    ("hour", "hours"),
    ("minute", "minutes"),
    ("second", "seconds"),
];

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
    /// Not in the grammar; `reason` says what exactly is wrong, and how to write it.
    #[error("invalid duration `{input}`: {reason}; {}", grammar_after(reason))]
    Syntax { input: String, reason: String },
    #[error("duration `{input}` is too large")]
    Overflow { input: String },
}

/// The list of units, named in the reasons that are about units.
const UNIT_LIST: &str = "units are y M w d h m s (m = minutes, M = months)";

/// What follows a reason: the grammar, without listing the units a second time.
fn grammar_after(reason: &str) -> &'static str {
    if reason.contains(UNIT_LIST) {
        "several in descending order, e.g. `30d`, `1h30m`, `1y6M`, or `0` for never"
    } else {
        GRAMMAR
    }
}

/// Quotes user input for an error message: control characters escaped, long input cut.
fn quote(input: &str) -> String {
    crate::term::excerpt(input, 40)
}

/// `1.5h` written without a fraction (`1h30m`), when the next smaller unit holds it exactly.
fn without_fraction(whole: &str, frac: &str, unit: char) -> Option<String> {
    let (smaller, factor) = match unit {
        'w' => ('d', 7u64),
        'd' => ('h', 24),
        'h' => ('m', 60),
        'm' => ('s', 60),
        _ => return None,
    };
    if frac.is_empty() || frac.len() > 6 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let num: u64 = frac.parse().ok()?;
    let den = 10u64.pow(u32::try_from(frac.len()).ok()?);
    if !(num * factor).is_multiple_of(den) {
        return None;
    }
    let part = num * factor / den;
    Some(match (whole, part) {
        (0, p) => format!("{p}{smaller}"),
        (w, 0) => format!("{w}{unit}"),
        (w, p) => format!("{w}{unit}{p}{smaller}"),
    })
}

/// One `INTEGER UNIT` part as written: ASCII digits, then a unit letter that no other letter
/// follows (`1mo` and `2days` are not parts).
fn part(input: &str) -> IResult<&str, (&str, char)> {
    terminated(
        (digit1, one_of(&UNITS[..])),
        not(satisfy(|c| c.is_ascii_alphabetic())),
    )
    .parse(input)
}

/// The grammar: the parts at the start of `s`, and the rest, which is empty when all of `s`
/// is parts. Whether the units are in order, and the values, are checked afterwards.
fn parts(s: &str) -> (Vec<(&str, char)>, &str) {
    // `many0` stops at the first input that is not a part; it cannot fail on complete input
    // because every part consumes something.
    many0(part)
        .parse(s)
        .map_or((Vec::new(), s), |(rest, parts)| (parts, rest))
}

/// What a parser that never fails (`digit0`, `alpha0`) takes from the start of `s`, and the
/// rest.
fn take<'a>(
    mut parser: impl Parser<&'a str, Output = &'a str, Error = nom::error::Error<&'a str>>,
    s: &'a str,
) -> (&'a str, &'a str) {
    parser
        .parse(s)
        .map_or(("", s), |(rest, taken)| (taken, rest))
}

/// Why `rest`, where the grammar stopped, is not an `INTEGER UNIT` part: the specific reason
/// for the refusal. `first` when no part came before it (a sign is only named there).
fn diagnose(rest: &str, first: bool) -> String {
    const SPACES: &str = "spaces and line breaks are not accepted";
    let unexpected = |c: char| format!("unexpected character `{}`", quote(&c.to_string()));
    if rest.is_empty() {
        return "it is empty".to_owned();
    }
    let (digits, after) = take(digit0, rest);
    let Some(next) = after.chars().next() else {
        return format!("`{}` has no unit; add one: {UNIT_LIST}", quote(digits));
    };
    let (word, _) = take(alpha0, after);
    if digits.is_empty() {
        return match next {
            '-' if first => "durations cannot be negative".to_owned(),
            '+' if first => format!("no sign is accepted; write `{}`", quote(&rest[1..])),
            c if c.is_whitespace() => SPACES.to_owned(),
            c if UNITS.contains(&c) => format!("the unit `{c}` has no number before it"),
            c if c.is_ascii_alphabetic() => format!("unknown unit `{}`; {UNIT_LIST}", quote(word)),
            c => unexpected(c),
        };
    }
    if let Some(reason) = fraction(digits, after) {
        return reason;
    }
    if next.is_ascii_alphabetic() {
        // A unit letter followed by more letters (`1mo`, `2days`), or a letter that is not a
        // unit; a capital of a unit gets its lower case suggested (`1D`).
        let lower = next.to_ascii_lowercase();
        let hint = if word.len() == 1 && UNITS.contains(&lower) && lower != next {
            format!(" (did you mean `{lower}`?)")
        } else {
            String::new()
        };
        return format!("unknown unit `{}`{hint}; {UNIT_LIST}", quote(word));
    }
    if next.is_whitespace() {
        return SPACES.to_owned();
    }
    unexpected(next)
}

/// The reason for `1.5h` or `1,5h` (`after` follows the whole number `whole`), naming the
/// same length without a fraction when the next smaller unit holds it; `None` when `after`
/// is not a fraction (`1,d` is a stray comma).
fn fraction(whole: &str, after: &str) -> Option<String> {
    let (rest, (separator, frac)) = (one_of::<_, _, nom::error::Error<&str>>(".,"), digit0)
        .parse(after)
        .ok()?;
    if frac.is_empty() && separator == ',' {
        return None;
    }
    let hint = rest
        .chars()
        .next()
        .and_then(|unit| without_fraction(whole, frac, unit))
        .map_or_else(
            || "write it in a smaller unit, e.g. `1h30m` for 1.5 hours".to_owned(),
            |w| format!("write `{w}`"),
        );
    Some(format!("fractions are not accepted; {hint}"))
}

impl HumanDuration {
    /// Parses `s` strictly (see the module docs).
    pub fn parse(s: &str) -> Result<Self, DurationError> {
        let syntax = |reason: String| DurationError::Syntax {
            input: quote(s),
            reason,
        };
        let overflow = || DurationError::Overflow { input: quote(s) };
        if s == "0" {
            return Ok(HumanDuration::default());
        }
        let (parts, rest) = parts(s);
        if parts.is_empty() || !rest.is_empty() {
            return Err(syntax(diagnose(rest, parts.is_empty())));
        }
        let mut d = HumanDuration::default();
        let mut last: Option<usize> = None;
        for (digits, unit) in parts {
            let rank = UNITS
                .iter()
                .position(|u| *u == unit)
                .ok_or_else(|| syntax(format!("unknown unit `{unit}`")))?;
            if let Some(l) = last {
                if rank == l {
                    return Err(syntax(format!("`{unit}` appears twice")));
                }
                if rank < l {
                    return Err(syntax(format!(
                        "units must go from largest to smallest (`{unit}` comes before `{}`)",
                        UNITS[l]
                    )));
                }
            }
            last = Some(rank);
            if digits.bytes().all(|b| b == b'0') {
                return Err(syntax(format!(
                    "`{digits}{unit}` is a zero part; leave it out (`0` alone means never)"
                )));
            }
            if digits.starts_with('0') {
                return Err(syntax(format!(
                    "no leading zeros; write `{}{unit}`",
                    digits.trim_start_matches('0')
                )));
            }
            let value: u32 = digits.parse().map_err(|_| overflow())?;
            *d.field_mut(rank) = value;
        }
        if d.span().is_err() {
            return Err(overflow());
        }
        Ok(d)
    }

    /// The duration in words, e.g. `1 year 6 months`, `6 minutes`, `never`.
    pub fn words(&self) -> String {
        if self.is_never() {
            return "never".to_owned();
        }
        self.fields()
            .into_iter()
            .zip(UNIT_WORDS)
            .filter(|(v, _)| *v != 0)
            .map(|(v, (one, many))| format!("{v} {}", if v == 1 { one } else { many }))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn field_mut(&mut self, rank: usize) -> &mut u32 {
        match rank {
            0 => &mut self.years,
            1 => &mut self.months,
            2 => &mut self.weeks,
            3 => &mut self.days,
            4 => &mut self.hours,
            5 => &mut self.minutes,
            _ => &mut self.seconds,
        }
    }

    fn fields(&self) -> [u32; 7] {
        [
            self.years,
            self.months,
            self.weeks,
            self.days,
            self.hours,
            self.minutes,
            self.seconds,
        ]
    }

    /// The duration as a jiff span; an error when a unit is beyond jiff's limits.
    fn span(&self) -> Result<Span, jiff::Error> {
        Span::new()
            .try_years(self.years)?
            .try_months(self.months)?
            .try_weeks(self.weeks)?
            .try_days(self.days)?
            .try_hours(self.hours)?
            .try_minutes(self.minutes)?
            .try_seconds(self.seconds)
    }

    /// `0`: never expires.
    pub fn is_never(&self) -> bool {
        *self == HumanDuration::default()
    }

    /// The instant `self` after `start` (calendar units in UTC), `None` for never.
    pub fn after(&self, start: Timestamp) -> Result<Option<Timestamp>, DurationError> {
        if self.is_never() {
            return Ok(None);
        }
        let overflow = || DurationError::Overflow {
            input: self.to_string(),
        };
        let span = self.span().map_err(|_| overflow())?;
        let end = start
            .to_zoned(TimeZone::UTC)
            .checked_add(span)
            .map_err(|_| overflow())?;
        Ok(Some(end.timestamp()))
    }

    /// The length as a fixed `std::time::Duration` when it has no calendar units (months,
    /// years); `None` otherwise. `0` gives `Some(ZERO)`.
    pub fn as_fixed(&self) -> Option<std::time::Duration> {
        if self.years != 0 || self.months != 0 {
            return None;
        }
        // At most 4.3e9 * 604800 per unit: far below u64::MAX, so no overflow.
        let secs = u64::from(self.weeks) * 604_800
            + u64::from(self.days) * 86_400
            + u64::from(self.hours) * 3_600
            + u64::from(self.minutes) * 60
            + u64::from(self.seconds);
        Some(std::time::Duration::from_secs(secs))
    }
}

impl std::fmt::Display for HumanDuration {
    /// Canonical form, e.g. `1y6M`, `2w3d`, `0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_never() {
            return f.write_str("0");
        }
        for (value, unit) in self.fields().into_iter().zip(UNITS) {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_contract_examples() {
        let d = HumanDuration::parse("1y6M").unwrap();
        assert_eq!((d.years, d.months), (1, 6));
        assert_eq!(HumanDuration::parse("30s").unwrap().seconds, 30);
        assert_eq!(HumanDuration::parse("15m").unwrap().minutes, 15);
        let d = HumanDuration::parse("1h30m").unwrap();
        assert_eq!((d.hours, d.minutes), (1, 30));
        assert_eq!(HumanDuration::parse("7d").unwrap().days, 7);
        let d = HumanDuration::parse("2w3d").unwrap();
        assert_eq!((d.weeks, d.days), (2, 3));
        let all = HumanDuration::parse("1y2M3w4d5h6m7s").unwrap();
        assert_eq!(all.fields(), [1, 2, 3, 4, 5, 6, 7]);
        assert!(HumanDuration::parse("0").unwrap().is_never());
    }

    #[test]
    fn refuses_everything_else_with_the_grammar() {
        for bad in [
            "", " ", "1.5h", "-1d", "+1d", "1q", "6M1y", "1d1d", "1m1h", "00", "07d", "0d", "1h0m",
            "1 d", " 1d", "1d ", "1D", "1Y", "d", "1", "10", "1d2", "1h30", "0s", "1d\n", "１d",
            "1d,2h", "1mo", "∞",
        ] {
            let err = HumanDuration::parse(bad).unwrap_err();
            assert!(
                matches!(err, DurationError::Syntax { .. }),
                "{bad:?} gave {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(GRAMMAR)
                    || (msg.contains(UNIT_LIST) && msg.contains("descending order, e.g. `30d`")),
                "{msg}"
            );
            assert!(msg.contains(&format!("`{}`", quote(bad))), "{msg}");
        }
    }

    #[test]
    fn each_refusal_says_what_is_wrong() {
        for (bad, reason) in [
            ("", "it is empty"),
            ("1.5h", "fractions are not accepted; write `1h30m`"),
            ("0.5h", "write `30m`"),
            ("2.25d", "write `2d6h`"),
            (
                "1.5y",
                "fractions are not accepted; write it in a smaller unit",
            ),
            ("1,5h", "fractions are not accepted"),
            ("-1d", "durations cannot be negative"),
            ("+1d", "no sign is accepted; write `1d`"),
            (
                "6M1y",
                "units must go from largest to smallest (`y` comes before `M`)",
            ),
            ("1m1h", "units must go from largest to smallest"),
            ("1d1d", "`d` appears twice"),
            (
                "1q",
                "unknown unit `q`; units are y M w d h m s (m = minutes, M = months)",
            ),
            ("1D", "unknown unit `D` (did you mean `d`?)"),
            ("1mo", "unknown unit `mo`"),
            ("2days", "unknown unit `days`"),
            ("1h30", "`30` has no unit"),
            ("10", "`10` has no unit"),
            ("d", "the unit `d` has no number before it"),
            ("07d", "no leading zeros; write `7d`"),
            ("0d", "`0d` is a zero part"),
            ("1h0m", "`0m` is a zero part"),
            (" 1d", "spaces and line breaks are not accepted"),
            ("1 d", "spaces and line breaks are not accepted"),
            ("1d\n", "spaces and line breaks are not accepted"),
            ("１d", "unexpected character `１`"),
            ("∞", "unexpected character `∞`"),
        ] {
            let msg = HumanDuration::parse(bad).unwrap_err().to_string();
            assert!(msg.contains(reason), "{bad:?}: {msg}");
            assert!(msg.contains("descending order"), "{bad:?}: {msg}");
            assert_eq!(
                msg.matches("minutes").count(),
                1,
                "units listed once: {msg}"
            );
        }
    }

    #[test]
    fn words_spell_out_the_units() {
        let w = |s: &str| HumanDuration::parse(s).unwrap().words();
        assert_eq!(w("6m"), "6 minutes");
        assert_eq!(w("6M"), "6 months");
        assert_eq!(w("1y6M"), "1 year 6 months");
        assert_eq!(w("2w3d"), "2 weeks 3 days");
        assert_eq!(w("1h1m1s"), "1 hour 1 minute 1 second");
        assert_eq!(w("0"), "never");
    }

    #[test]
    fn refuses_overflow() {
        for big in [
            "4294967296s",
            "99999999999999999999d",
            "20000y",
            "4294967295w",
        ] {
            let err = HumanDuration::parse(big).unwrap_err();
            assert!(
                matches!(err, DurationError::Overflow { .. }),
                "{big}: {err:?}"
            );
            assert!(err.to_string().contains(big));
        }
        // Within jiff's limits but past year 9999 from now: an error, never "no expiry".
        let d = HumanDuration::parse("9000y").unwrap();
        assert!(matches!(
            d.after(ts("2026-01-01T00:00:00Z")),
            Err(DurationError::Overflow { .. })
        ));
        let d = HumanDuration::parse("175307616h").unwrap();
        assert!(d.after(ts("2026-01-01T00:00:00Z")).is_err());
    }

    #[test]
    fn months_clamp_to_the_month_end_in_utc() {
        let start = ts("2026-01-31T12:00:00Z");
        let one_month = HumanDuration::parse("1M").unwrap();
        assert_eq!(
            one_month.after(start).unwrap(),
            Some(ts("2026-02-28T12:00:00Z"))
        );
        let leap = ts("2028-01-31T00:00:00Z");
        assert_eq!(
            one_month.after(leap).unwrap(),
            Some(ts("2028-02-29T00:00:00Z"))
        );
        let d = HumanDuration::parse("1y6M").unwrap();
        assert_eq!(
            d.after(ts("2026-08-31T00:00:00Z")).unwrap(),
            Some(ts("2028-02-29T00:00:00Z"))
        );
        let d = HumanDuration::parse("1d1h1m1s").unwrap();
        assert_eq!(
            d.after(ts("2026-12-31T23:00:00Z")).unwrap(),
            Some(ts("2027-01-02T00:01:01Z"))
        );
        assert_eq!(HumanDuration::default().after(start).unwrap(), None);
    }

    #[test]
    fn fixed_lengths() {
        let f = |s: &str| HumanDuration::parse(s).unwrap().as_fixed();
        assert_eq!(f("10s"), Some(std::time::Duration::from_secs(10)));
        assert_eq!(f("5m"), Some(std::time::Duration::from_secs(300)));
        assert_eq!(
            f("1w1d1h1m1s"),
            Some(std::time::Duration::from_secs(694_861))
        );
        assert_eq!(f("0"), Some(std::time::Duration::ZERO));
        assert_eq!(f("1M"), None);
        assert_eq!(f("1y"), None);
    }

    #[test]
    fn display_is_canonical() {
        for s in [
            "0",
            "1y6M",
            "2w3d",
            "1h30m",
            "30s",
            "1y2M3w4d5h6m7s",
            "4294967295s",
        ] {
            assert_eq!(HumanDuration::parse(s).unwrap().to_string(), s);
        }
        let d: HumanDuration = "15m".parse().unwrap();
        assert_eq!(d.to_string(), "15m");
    }

    fn representable() -> impl Strategy<Value = HumanDuration> {
        // Kept inside jiff's span limits (years <= 19998, hours <= 175307616, ...).
        (
            0u32..=19_998,
            0u32..=239_976,
            0u32..=1_043_497,
            0u32..=7_304_484,
            0u32..=175_307_616,
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(years, months, weeks, days, hours, minutes, seconds)| {
                HumanDuration {
                    years,
                    months,
                    weeks,
                    days,
                    hours,
                    minutes,
                    seconds,
                }
            })
    }

    proptest! {
        #[test]
        fn parse_display_roundtrip(d in representable()) {
            prop_assert_eq!(HumanDuration::parse(&d.to_string()), Ok(d));
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = HumanDuration::parse(&s);
        }

        #[test]
        fn every_refusal_is_one_clean_line_with_a_reason(s in "[0-9yMwdhmsqD+.,  -]{0,12}|\\PC{0,8}") {
            if let Err(e) = HumanDuration::parse(&s) {
                let msg = e.to_string();
                prop_assert!(!msg.chars().any(char::is_control), "{}", msg);
                match e {
                    DurationError::Syntax { reason, .. } => {
                        prop_assert!(!reason.is_empty());
                        prop_assert!(msg.contains("descending order"), "{}", msg);
                    }
                    DurationError::Overflow { .. } => prop_assert!(msg.contains("too large")),
                }
            }
        }

        #[test]
        fn never_panics_near_the_grammar(s in "[0-9yMwdhms+. -]{0,30}") {
            if let Ok(d) = HumanDuration::parse(&s) {
                prop_assert_eq!(d.to_string(), s);
                let _ = d.after(Timestamp::MAX);
                let _ = d.after(Timestamp::MIN);
            }
        }

        #[test]
        fn after_is_later_or_an_error(d in representable(), secs in 0i64..4_000_000_000) {
            let start = Timestamp::from_second(secs).unwrap();
            match d.after(start) {
                Ok(None) => prop_assert!(d.is_never()),
                Ok(Some(end)) => prop_assert!(end >= start),
                Err(e) => {
                    let overflow = matches!(e, DurationError::Overflow { .. });
                    prop_assert!(overflow);
                }
            }
        }
    }
}
