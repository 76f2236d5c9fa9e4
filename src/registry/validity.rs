//! The validity period (`notBefore`, `notAfter`) of an X.509 certificate, read from its DER
//! with a few lines of DER walking (no X.509 library: tessera only ever needs these two
//! dates, to show when the registry's certificate expires).

use jiff::Timestamp;

/// One DER element at the start of `b`: its tag, its content and what follows it. Only the
/// definite lengths DER allows (at most 4 length bytes).
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        b = &b[n..];
        len
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn time(tag: u8, text: &[u8]) -> Option<Timestamp> {
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i16 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let n = |i: usize| rest[i..i + 2].parse::<i8>().ok();
    let dt = jiff::civil::DateTime::new(year, n(0)?, n(2)?, n(4)?, n(6)?, n(8)?, 0).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// `(notBefore, notAfter)` of a DER certificate; `None` when it cannot be read.
pub fn certificate_validity(der: &[u8]) -> Option<(Timestamp, Timestamp)> {
    let (0x30, cert, _) = element(der)? else {
        return None;
    };
    let (0x30, tbs, _) = element(cert)? else {
        return None;
    };
    let (tag, _, mut rest) = element(tbs)?;
    if tag == 0xa0 {
        // The explicit version; the serial number follows.
        let (0x02, _, after) = element(rest)? else {
            return None;
        };
        rest = after;
    } else if tag != 0x02 {
        return None;
    }
    let (0x30, _signature, rest) = element(rest)? else {
        return None;
    };
    let (0x30, _issuer, rest) = element(rest)? else {
        return None;
    };
    let (0x30, validity, _) = element(rest)? else {
        return None;
    };
    let (t1, before, validity) = element(validity)?;
    let (t2, after, _) = element(validity)?;
    Some((time(t1, before)?, time(t2, after)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_validity_of_a_generated_certificate() {
        let key = crate::registry::key::generate_key().unwrap();
        let pem = crate::registry::key::self_signed_certificate(&key, "tessera").unwrap();
        let der = crate::registry::key::bundle_certificates(pem.as_bytes())
            .unwrap()
            .remove(0);
        let (before, after) = certificate_validity(&der).unwrap();
        let now = Timestamp::now();
        assert!(before <= now, "{before}");
        // `registry init` makes certificates valid for about ten years.
        let years = (after.as_second() - now.as_second()) / (365 * 86_400);
        assert!((9..=11).contains(&years), "{after}");
    }

    #[test]
    fn both_time_forms() {
        assert_eq!(
            time(0x17, b"491231235959Z").unwrap().to_string(),
            "2049-12-31T23:59:59Z"
        );
        assert_eq!(
            time(0x17, b"500101000000Z").unwrap().to_string(),
            "1950-01-01T00:00:00Z"
        );
        assert_eq!(
            time(0x18, b"20610301120000Z").unwrap().to_string(),
            "2061-03-01T12:00:00Z"
        );
        for bad in [
            &b"4912312359Z"[..],
            b"491231235959",
            b"49123123595aZ",
            b"491331235959Z",
        ] {
            assert!(time(0x17, bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        assert!(certificate_validity(b"").is_none());
        assert!(certificate_validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(certificate_validity(&[0x30, 0x03, 0x30, 0x01]).is_none());
        let key = crate::registry::key::generate_key().unwrap();
        let pem = crate::registry::key::self_signed_certificate(&key, "tessera").unwrap();
        let der = crate::registry::key::bundle_certificates(pem.as_bytes())
            .unwrap()
            .remove(0);
        for cut in 0..der.len() {
            let _ = certificate_validity(&der[..cut]);
        }
    }
}
