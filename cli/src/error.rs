//! The one shape of a configuration error both binaries print before they stop.

use std::fmt;

/// A configuration value that cannot be used. Displayed as one line:
/// `invalid FLOWGATE_LISTEN (--listen) "nowhere": expected an address like 0.0.0.0:8443`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The variable (`FLOWGATE_LISTEN`), or where else the value was set
    /// (`FLOWGATE_CONFIG route 2 (/whatsapp)`, `--timeout`).
    pub var: String,
    /// The matching command-line flag, without its dashes.
    pub flag: Option<String>,
    /// How the offending value appears in the line.
    pub value: Shown,
    pub reason: String,
}

/// How a [`ConfigError`] shows the value it refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// The value itself, quoted.
    Value(String),
    /// A secret: only `(value hidden)` is printed.
    Hidden,
    /// Not a single value but a place in a file: printed as `in <file>`.
    In(String),
}

impl ConfigError {
    /// `invalid {var} (--{flag}) "{value}": {reason}`; an empty `flag` is left out.
    pub fn new(
        var: impl Into<String>,
        flag: &str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            var: var.into(),
            flag: (!flag.is_empty()).then(|| flag.to_owned()),
            value: Shown::Value(value.into()),
            reason: reason.into(),
        }
    }

    /// The same for a secret, whose value never appears in the line.
    pub fn hidden(var: impl Into<String>, flag: &str, reason: impl Into<String>) -> Self {
        Self {
            value: Shown::Hidden,
            ..Self::new(var, flag, "", reason)
        }
    }

    /// A problem at `place` (say, one entry) of the file `file`.
    pub fn in_file(
        place: impl Into<String>,
        file: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            value: Shown::In(file.into()),
            ..Self::new(place, "", "", reason)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}", self.var)?;
        if let Some(flag) = &self.flag {
            write!(f, " (--{flag})")?;
        }
        match &self.value {
            Shown::Value(value) => write!(f, " {value:?}")?,
            Shown::Hidden => f.write_str(" (value hidden)")?,
            Shown::In(file) => write!(f, " in {file}")?,
        }
        write!(f, ": {}", self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_in_each_shape() {
        let cases = [
            (
                ConfigError::new(
                    "FLOWGATE_LISTEN",
                    "listen",
                    "nowhere",
                    "expected an address",
                ),
                r#"invalid FLOWGATE_LISTEN (--listen) "nowhere": expected an address"#,
            ),
            (
                ConfigError::new("--timeout", "", "soon", "expected a duration"),
                r#"invalid --timeout "soon": expected a duration"#,
            ),
            (
                ConfigError::hidden("FLOWGATE_APP_SECRET", "app-secret", "meta only"),
                "invalid FLOWGATE_APP_SECRET (--app-secret) (value hidden): meta only",
            ),
            (
                ConfigError::in_file("FLOWGATE_CONFIG route 1 (/a)", "r.toml", "bad mode"),
                "invalid FLOWGATE_CONFIG route 1 (/a) in r.toml: bad mode",
            ),
        ];
        for (error, line) in cases {
            assert_eq!(error.to_string(), line);
        }
    }
}
