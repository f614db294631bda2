//! Overflow-checked number parsing on byte slices (no UTF-8 round trip).

use super::ParseError;

/// Parses an unsigned decimal; rejects empty input, signs, and overflow.
pub fn parse_dec(field: &'static str, bytes: &[u8]) -> Result<u64, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::BadNumber(field));
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(ParseError::BadNumber(field));
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(ParseError::BadNumber(field))
    })
}

/// Parses an unsigned hexadecimal (either case); rejects empty input and overflow.
pub fn parse_hex(field: &'static str, bytes: &[u8]) -> Result<u64, ParseError> {
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(ParseError::BadNumber(field));
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(16).ok_or(ParseError::BadNumber(field))?;
        Ok((acc << 4) | u64::from(digit))
    })
}

/// Parses a signed decimal that must fit an i32 (pids, session ids; -1 appears for "none").
pub(crate) fn parse_i32(field: &'static str, bytes: &[u8]) -> Result<i32, ParseError> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    let magnitude =
        i64::try_from(parse_dec(field, digits)?).map_err(|_| ParseError::BadNumber(field))?;
    let value = if negative { -magnitude } else { magnitude };
    i32::try_from(value).map_err(|_| ParseError::BadNumber(field))
}

/// `parse_dec` narrowed to a smaller type.
pub(crate) fn parse_dec_as<T: TryFrom<u64>>(
    field: &'static str,
    bytes: &[u8],
) -> Result<T, ParseError> {
    T::try_from(parse_dec(field, bytes)?).map_err(|_| ParseError::BadNumber(field))
}

/// `parse_hex` narrowed to a smaller type.
pub(crate) fn parse_hex_as<T: TryFrom<u64>>(
    field: &'static str,
    bytes: &[u8],
) -> Result<T, ParseError> {
    T::try_from(parse_hex(field, bytes)?).map_err(|_| ParseError::BadNumber(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_overflow_and_junk() {
        assert_eq!(parse_dec("x", b"18446744073709551615"), Ok(u64::MAX));
        assert!(parse_dec("x", b"18446744073709551616").is_err());
        assert!(parse_dec("x", b"").is_err());
        assert!(parse_dec("x", b"12a").is_err());
        assert!(parse_hex("x", b"11112222333344445").is_err());
        assert_eq!(parse_hex("x", b"fF"), Ok(255));
        assert_eq!(parse_i32("x", b"-1"), Ok(-1));
        assert!(parse_i32("x", b"2147483648").is_err());
        assert!(parse_dec_as::<u16>("x", b"65536").is_err());
    }
}
