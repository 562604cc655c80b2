//! Kubernetes resource quantities (`100m`, `0.5`, `64Mi`, `1G`, `1e3`) as
//! exact integers: millicpu for CPU, bytes for memory.
//!
//! A quantity is a decimal number with an optional suffix: binary SI
//! (`Ki Mi Gi Ti Pi Ei`), decimal SI (`n u m k M G T P E`) or a decimal
//! exponent (`e3`, `E-2`). Values are kept as an exact fraction and rounded
//! up at the end, as Kubernetes' `MilliValue()` and `Value()` do, so `0.1m`
//! of CPU is 1 millicpu and `0.5` bytes is 1 byte.

use std::fmt;

/// Why a quantity string did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantityError(String);

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QuantityError {}

/// A non-negative quantity as the exact fraction `numerator / denominator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    numerator: u128,
    denominator: u128,
}

/// Largest decimal exponent accepted; beyond it no request is meaningful
/// and the arithmetic would overflow.
const MAX_EXPONENT: i32 = 24;

/// Most significant digits kept; more cannot change a millicpu or byte.
const MAX_DIGITS: usize = 24;

impl Quantity {
    /// Parses a Kubernetes quantity string. Negative quantities are
    /// rejected: no request or capacity may be negative.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let bad = |why: &str| QuantityError(format!("invalid quantity {text:?}: {why}"));
        let s = text.trim();
        let s = s.strip_prefix('+').unwrap_or(s);
        if s.starts_with('-') {
            return Err(bad("negative"));
        }
        let number_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(number_end);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad("no digits"));
        }
        if frac_part.contains('.') {
            return Err(bad("more than one decimal point"));
        }
        let int_part = int_part.trim_start_matches('0');
        let frac_part = frac_part.trim_end_matches('0');
        if int_part.len() + frac_part.len() > MAX_DIGITS {
            return Err(bad("too many digits"));
        }
        let mut mantissa: u128 = 0;
        for c in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa * 10 + u128::from(c - b'0');
        }
        let mut decimal_exponent = -(frac_part.len() as i32);
        let mut binary_exponent = 0u32;
        match suffix {
            "" => {}
            "Ki" => binary_exponent = 10,
            "Mi" => binary_exponent = 20,
            "Gi" => binary_exponent = 30,
            "Ti" => binary_exponent = 40,
            "Pi" => binary_exponent = 50,
            "Ei" => binary_exponent = 60,
            "n" => decimal_exponent -= 9,
            "u" => decimal_exponent -= 6,
            "m" => decimal_exponent -= 3,
            "k" => decimal_exponent += 3,
            "M" => decimal_exponent += 6,
            "G" => decimal_exponent += 9,
            "T" => decimal_exponent += 12,
            "P" => decimal_exponent += 15,
            "E" => decimal_exponent += 18,
            other => {
                let Some(exp) = other.strip_prefix('e').or_else(|| other.strip_prefix('E')) else {
                    return Err(bad("unknown suffix"));
                };
                let exp: i32 = exp.parse().map_err(|_| bad("bad exponent"))?;
                if exp.abs() > MAX_EXPONENT {
                    return Err(bad("exponent out of range"));
                }
                decimal_exponent += exp;
            }
        }
        let overflow = || bad("too large");
        let mut numerator = mantissa
            .checked_mul(1u128 << binary_exponent)
            .ok_or_else(overflow)?;
        let mut denominator: u128 = 1;
        if decimal_exponent >= 0 {
            numerator = numerator
                .checked_mul(10u128.pow(decimal_exponent as u32))
                .ok_or_else(overflow)?;
        } else {
            denominator = 10u128.pow(decimal_exponent.unsigned_abs());
        }
        Ok(Quantity {
            numerator,
            denominator,
        })
    }

    /// The value times `scale`, rounded up, saturating at `u64::MAX`.
    fn scaled_ceil(self, scale: u128) -> u64 {
        let Some(n) = self.numerator.checked_mul(scale) else {
            return u64::MAX;
        };
        u64::try_from(n.div_ceil(self.denominator)).unwrap_or(u64::MAX)
    }

    /// The value in thousandths, rounded up (CPU in millicpu).
    pub fn milli_value(self) -> u64 {
        self.scaled_ceil(1000)
    }

    /// The value, rounded up (memory in bytes, pod counts).
    pub fn value(self) -> u64 {
        self.scaled_ceil(1)
    }
}

/// CPU in millicpu: `"100m"` → 100, `"1"` → 1000, `"0.5"` → 500.
pub fn millicpu(text: &str) -> Result<u64, QuantityError> {
    Quantity::parse(text).map(Quantity::milli_value)
}

/// Memory (or any plain amount) in units: `"64Mi"` → 67108864,
/// `"1G"` → 1000000000, `"1e3"` → 1000.
pub fn bytes(text: &str) -> Result<u64, QuantityError> {
    Quantity::parse(text).map(Quantity::value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicpu() {
        assert_eq!(millicpu("100m"), Ok(100));
        assert_eq!(millicpu("1"), Ok(1000));
        assert_eq!(millicpu("0.5"), Ok(500));
        assert_eq!(millicpu(".5"), Ok(500));
        assert_eq!(millicpu("2."), Ok(2000));
        assert_eq!(millicpu("1.25"), Ok(1250));
        assert_eq!(millicpu("+3"), Ok(3000));
        assert_eq!(millicpu("0"), Ok(0));
        assert_eq!(millicpu("250000u"), Ok(250));
        assert_eq!(millicpu("1e-3"), Ok(1));
        // Kubernetes rounds sub-milli amounts up.
        assert_eq!(millicpu("0.0001"), Ok(1));
        assert_eq!(millicpu("1n"), Ok(1));
        assert_eq!(millicpu("4k"), Ok(4_000_000));
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(bytes("64Mi"), Ok(64 << 20));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("1e3"), Ok(1000));
        assert_eq!(bytes("1E3"), Ok(1000));
        assert_eq!(bytes("128974848"), Ok(128_974_848));
        assert_eq!(bytes("129M"), Ok(129_000_000));
        assert_eq!(bytes("123Mi"), Ok(123 << 20));
        assert_eq!(bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(bytes("8Gi"), Ok(8 << 30));
        assert_eq!(bytes("1Ki"), Ok(1024));
        assert_eq!(bytes("2Ti"), Ok(2 << 40));
        assert_eq!(bytes("1Ei"), Ok(1 << 60));
        assert_eq!(bytes("100m"), Ok(1));
        assert_eq!(bytes("0.5"), Ok(1));
        assert_eq!(bytes(" 10 "), Ok(10));
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in [
            "", "m", "Mi", ".", "-1", "1.2.3", "1x", "1KiB", "1e", "1e99", "1ee3", "abc", "1 Mi",
            "0x10",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        assert!(bytes("999999999999999999999999E").is_err());
        assert_eq!(bytes("16Ei"), Ok(u64::MAX));
        assert_eq!(millicpu("1e20"), Ok(u64::MAX));
    }
}
