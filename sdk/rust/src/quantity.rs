//! Kubernetes resource quantities (`250m`, `1.5`, `128Mi`, `1G`, `2e3`).
//!
//! Parsing is exact (no floating point) and rounds up like Kubernetes'
//! `Quantity.MilliValue()` / `Value()`, so `0.1m` CPU requests one
//! millicore rather than nothing.

/// A parsed quantity: `mantissa × 10^exp10 × 2^exp2`, with a sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

impl Quantity {
    /// Parses Kubernetes' quantity syntax: a signed decimal number and one
    /// suffix, binary (`Ki` … `Ei`), decimal (`n u m k M G T P E`) or an
    /// exponent (`e3`, `E-2`). `None` for anything else.
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let mut mantissa: u128 = 0;
        for digit in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(u128::from(digit - b'0'))?;
        }
        let scale = i32::try_from(frac_part.len()).ok()?;
        let (exp10, exp2) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            _ => {
                let exponent = suffix.strip_prefix(['e', 'E'])?;
                let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (exponent.parse::<i32>().ok()?, 0)
            }
        };
        Some(Quantity {
            negative,
            mantissa,
            exp10: exp10.checked_sub(scale)?,
            exp2,
        })
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.negative && self.mantissa != 0
    }

    /// The magnitude in thousandths, rounded up (`250m` → 250, `1` → 1000);
    /// `None` if it does not fit in a `u64`.
    pub fn milli_value(&self) -> Option<u64> {
        self.scaled(3)
    }

    /// The magnitude in units, rounded up (`1Ki` → 1024, `1.5` → 2);
    /// `None` if it does not fit in a `u64`.
    pub fn value(&self) -> Option<u64> {
        self.scaled(0)
    }

    fn scaled(&self, extra_exp10: i32) -> Option<u64> {
        let n = self.mantissa.checked_mul(1u128.checked_shl(self.exp2)?)?;
        let exp = self.exp10 + extra_exp10;
        let v = if exp >= 0 {
            n.checked_mul(10u128.checked_pow(exp.unsigned_abs())?)?
        } else {
            match 10u128.checked_pow(exp.unsigned_abs()) {
                Some(div) => n.div_ceil(div),
                // Dividing by more than u128 holds leaves less than one unit.
                None => u128::from(n != 0),
            }
        };
        u64::try_from(v).ok()
    }
}

/// CPU in millicores (`500m` → 500, `2` → 2000); `None` if invalid or
/// negative.
pub fn parse_cpu(text: &str) -> Option<u64> {
    Quantity::parse(text)
        .filter(|q| !q.is_negative())?
        .milli_value()
}

/// Memory (or storage) in bytes (`128Mi`, `1G`); `None` if invalid or
/// negative.
pub fn parse_bytes(text: &str) -> Option<u64> {
    Quantity::parse(text).filter(|q| !q.is_negative())?.value()
}

/// Millicores as Kubernetes writes them: `2` for whole cores, else `500m`.
pub fn format_cpu(milli_cpu: u64) -> String {
    if milli_cpu.is_multiple_of(1000) {
        (milli_cpu / 1000).to_string()
    } else {
        format!("{milli_cpu}m")
    }
}

/// Bytes in the largest binary unit that divides them exactly (`1Gi`,
/// `1536Ki`), else plain bytes.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    for (suffix, shift) in UNITS {
        let unit = 1u64 << shift;
        if bytes != 0 && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu("250m"), Some(250));
        assert_eq!(parse_cpu("1"), Some(1000));
        assert_eq!(parse_cpu("1.5"), Some(1500));
        assert_eq!(parse_cpu("0.1m"), Some(1));
        assert_eq!(parse_cpu(".5"), Some(500));
        assert_eq!(parse_cpu("2e3"), Some(2_000_000));
        assert_eq!(parse_cpu("100n"), Some(1));
        assert_eq!(parse_cpu("-1"), None);
        assert_eq!(parse_cpu(""), None);
        assert_eq!(parse_cpu("abc"), None);
        assert_eq!(parse_cpu("1x"), None);
        assert_eq!(parse_cpu("."), None);
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("128Mi"), Some(128 << 20));
        assert_eq!(parse_bytes("1Gi"), Some(1 << 30));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("1.5Ki"), Some(1536));
        assert_eq!(parse_bytes("1e3"), Some(1000));
        assert_eq!(parse_bytes("1E-2"), Some(1));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("+5k"), Some(5000));
        assert_eq!(parse_bytes("16Ei"), None, "overflows u64");
        assert_eq!(parse_bytes("1e"), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_cpu(250), "250m");
        assert_eq!(format_bytes(1 << 30), "1Gi");
        assert_eq!(format_bytes(1536 << 10), "1536Ki");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(0), "0");
    }
}
