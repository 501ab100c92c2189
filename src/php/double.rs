//! PHP doubles as php-memcached stores them: David Gay's `g_fmt` over the shortest digits that
//! read back as the same double.

use std::fmt::Write;

use crate::error::BoxError;

/// The text php-memcached writes for `x`: `1.5`, `.1` (no leading zero), `-0`, `100`, `1e+15`,
/// `1e-07`, `Infinity`, `-Infinity`, `NaN`.
///
/// The digits are the shortest that read back as `x` (Rust's and `zend_dtoa` mode 0 agree). The
/// exponent form is used when the decimal point is four or more places before the first digit,
/// or more than five zeros would follow the digits; its exponent has a sign and two digits at
/// least.
pub(crate) fn format(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    let mut out = String::with_capacity(24);
    if x.is_sign_negative() {
        out.push('-');
    }
    if x.is_infinite() {
        out.push_str("Infinity");
        return out;
    }
    let (digits, exponent) = shortest_digits(x.abs());
    // Where the decimal point goes, counted from the first digit (dtoa's `decpt`).
    let point = exponent + 1;
    let len = digits.len() as i32;
    if point <= -4 || point > len + 5 {
        out.push_str(&digits[..1]);
        if len > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        write!(out, "e{sign}{:02}", exponent.unsigned_abs()).expect("writing to a String");
    } else if point <= 0 {
        out.push('.');
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else if point >= len {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - len) as usize));
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// The shortest digits that read back as `x` (finite, not negative), and the exponent of the
/// first, as `zend_dtoa` mode 0 gives them: where two candidates are equally near `x`, the one
/// with the even last digit (Rust's formatting takes the upper one).
fn shortest_digits(x: f64) -> (String, i32) {
    let (digits, exponent) = split(&format!("{x:e}"));
    // A tie needs `x` to be exactly halfway: one more digit, correctly rounded, is a 5...
    let (longer, longer_exponent) = split(&format!("{x:.*e}", digits.len()));
    if !longer.ends_with('5') || longer_exponent != exponent {
        return (digits, exponent);
    }
    // ...with nothing after it (767 digits hold any double exactly).
    let (exact, _) = split(&format!("{x:.767e}"));
    if exact[digits.len() + 1..].bytes().any(|b| b != b'0') {
        return (digits, exponent);
    }
    let lower = &longer[..digits.len()];
    let even = match lower.ends_with(['0', '2', '4', '6', '8']) {
        true => Some(lower.to_string()),
        false => increment(lower),
    };
    match even {
        Some(even) if even != digits && with_exponent(&even, exponent).parse() == Ok(x) => {
            (even.trim_end_matches('0').to_string(), exponent)
        }
        _ => (digits, exponent),
    }
}

/// The digits plus one in the last place, unless that carries into a new digit.
fn increment(digits: &str) -> Option<String> {
    let mut bytes = digits.as_bytes().to_vec();
    for b in bytes.iter_mut().rev() {
        if *b == b'9' {
            *b = b'0';
        } else {
            *b += 1;
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

/// `1.2345e-7` as its digits (`12345`) and exponent (-7).
fn split(scientific: &str) -> (String, i32) {
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} writes an exponent");
    let digits = mantissa.chars().filter(|&c| c != '.').collect();
    (
        digits,
        exponent.parse().expect("{:e} writes a decimal exponent"),
    )
}

/// `12345` and -7 as `1.2345e-7`.
fn with_exponent(digits: &str, exponent: i32) -> String {
    let (first, rest) = digits.split_at(1);
    format!("{first}.{rest}e{exponent}")
}

/// A double as php-memcached reads it: `Infinity`, `-Infinity`, `NaN`, or a decimal number. PHP
/// reads anything else as 0; this is an error instead.
pub(crate) fn parse(data: &[u8]) -> Result<f64, BoxError> {
    let text = std::str::from_utf8(data)?;
    match text {
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        "NaN" | "-NaN" => Ok(f64::NAN),
        _ => text
            .parse()
            .map_err(|_| format!("{text:?} is not a PHP double").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_php_memcached() {
        // What php-memcached 3.2.0 stored for each (tests/php/facts.php prints them).
        let cases = [
            (1.5, "1.5"),
            (0.1, ".1"),
            (1e100, "1e+100"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1.0 / 3.0, ".3333333333333333"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
            (100.0, "100"),
            (1e15, "1e+15"),
            (1e-7, "1e-07"),
            (123456789012345678.0, "123456789012345680"),
            (0.001, ".001"),
            (1e-5, "1e-05"),
            (-2.5e-300, "-2.5e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (123456.0, "123456"),
            (1234567.0, "1234567"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            // Exactly halfway between ...398.2 and ...398.3: dtoa takes the even digit.
            (572_570_385_441_398.0 + 0.25, "572570385441398.2"),
            (0.3, ".3"),
            // Halfway too; Python's repr (the same dtoa) gives these.
            (1_125_899_906_842_624.0 + 0.25, "1125899906842624.2"),
            (1_125_899_906_842_624.0 + 0.75, "1125899906842624.8"),
            (1_125_899_906_842_625.0 + 0.25, "1125899906842625.2"),
            (1_125_899_906_842_625.0 + 0.75, "1125899906842625.8"),
        ];
        for (x, text) in cases {
            assert_eq!(format(x), text, "{x:e}");
            let back = parse(text.as_bytes()).unwrap();
            assert!(back == x || x.is_nan() && back.is_nan(), "{text}");
        }
    }

    #[test]
    fn parse_refuses_what_is_not_a_number() {
        assert!(parse(b"").is_err());
        assert!(parse(b"1.5x").is_err());
        assert!(parse(b"\xff").is_err());
        assert_eq!(parse(b"-Infinity").unwrap(), f64::NEG_INFINITY);
    }
}
