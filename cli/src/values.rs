//! The values flags take: byte counts, durations, split sizes,
//! `key=value` pairs and CSV delimiters, each with an error that says what
//! was expected.

/// Parses a duration in milliseconds: `250ms`, `10s`, `5m`, `1h`.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    parse_with_unit(
        text,
        "a duration (e.g. 10s, 500ms, 5m)",
        |unit| match unit {
            "ms" => Ok(1),
            "s" => Ok(1_000),
            "m" => Ok(60_000),
            "h" => Ok(3_600_000),
            _ => Err("needs a unit: ms, s, m or h"),
        },
    )
}

/// A duration flag's value, in milliseconds. It prints with the largest
/// unit that divides it at least twice over (`10s`, `60s`, `5m`), so
/// `--help` shows defaults as they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub u64);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let units = [("h", 3_600_000), ("m", 60_000), ("s", 1_000)];
        match units
            .iter()
            .find(|(_, unit)| self.0.is_multiple_of(*unit) && self.0 / unit >= 2)
        {
            Some((name, unit)) => write!(f, "{}{name}", self.0 / unit),
            None => write!(f, "{}ms", self.0),
        }
    }
}

/// Parses a duration flag: `250ms`, `10s`, `5m`, `1h`.
pub fn parse_millis(text: &str) -> Result<Millis, String> {
    parse_duration_ms(text).map(Millis)
}

/// Parses `NUMBER[UNIT]` into the number times the unit's multiplier.
fn parse_with_unit(
    text: &str,
    what: &str,
    multiplier: impl Fn(&str) -> Result<u64, &'static str>,
) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not {what}"))?;
    let multiplier = multiplier(unit.trim()).map_err(|reason| format!("{text:?} {reason}"))?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a CSV delimiter: one character, or `tab`.
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if text.len() == 1 && text.is_ascii() && text != "\"" && text != "\n" => {
            Ok(text.as_bytes()[0])
        }
        _ => Err(format!(
            "{text:?} is not a one-character delimiter (or `tab`); quotes and line breaks cannot delimit fields"
        )),
    }
}

/// Parses a byte count with an optional unit: B, KB/KiB, MB/MiB, GB/GiB.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    parse_with_unit(text, "a byte count (e.g. 64MiB)", |unit| {
        match unit.to_ascii_lowercase().as_str() {
            "" | "b" => Ok(1),
            "k" | "kb" => Ok(1_000),
            "kib" => Ok(1 << 10),
            "m" | "mb" => Ok(1_000_000),
            "mib" => Ok(1 << 20),
            "g" | "gb" => Ok(1_000_000_000),
            "gib" => Ok(1 << 30),
            _ => Err("has an unknown unit (use B, KiB, MiB, GiB, KB, MB, GB)"),
        }
    })
}

/// `--split-size`: `auto` or a byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitSize {
    /// The coordinator's choice from the input and the live slots.
    Auto,
    Bytes(u64),
}

impl SplitSize {
    /// What a submission carries: `None` for auto.
    pub fn bytes(self) -> Option<u64> {
        match self {
            SplitSize::Auto => None,
            SplitSize::Bytes(bytes) => Some(bytes),
        }
    }
}

pub fn parse_split_size(text: &str) -> Result<SplitSize, String> {
    match text {
        "auto" => Ok(SplitSize::Auto),
        _ => parse_bytes(text).map(SplitSize::Bytes),
    }
}

/// Parses `key=value` (`--arg`, `--storage-option`).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_units() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
    }

    #[test]
    fn durations_print_as_written() {
        for text in ["10s", "60s", "5m", "30s", "250ms", "2h", "1500ms"] {
            assert_eq!(parse_millis(text).unwrap().to_string(), text);
        }
        assert_eq!(Millis(3_600_000).to_string(), "60m");
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert!(parse_duration_ms("10").is_err());
        assert!(parse_duration_ms("soon").is_err());
    }
}
