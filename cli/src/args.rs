//! Reading the command line and environment with clap, so that a value that cannot be
//! used stops the binary with one line naming its variable and flag, not clap's usage
//! screen: checked values ([`checked`]), the parse itself ([`parse`]), and the flag both
//! `healthcheck` subcommands share ([`HealthcheckTimeout`]).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Arg, Command, Parser};

use crate::ConfigError;

/// The subcommand both binaries have for container healthchecks. Every failure of a
/// healthcheck, a bad flag included, exits with 1: container runtimes read any other
/// non-zero status as unhealthy too, and Docker reserves 2.
pub const HEALTHCHECK: &str = "healthcheck";

/// A clap value parser made of a plain function; build it with [`checked`].
#[derive(Clone)]
pub struct Checked<T> {
    parse: fn(&str) -> Result<T, String>,
}

impl<T> fmt::Debug for Checked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Checked")
    }
}

/// A value parser that reads a value with `parse`. A refusal (`Err(reason)`) becomes a
/// [`ConfigError`] naming the argument's variable and flag, which [`parse`] hands back
/// as [`ArgsError::Invalid`]. Values of arguments that hide their environment values
/// (secrets) are never repeated.
pub fn checked<T>(parse: fn(&str) -> Result<T, String>) -> Checked<T> {
    Checked { parse }
}

/// The reason clap carries for a refused value: the whole error, and which command's
/// argument it was.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
struct Refused {
    command: String,
    error: Box<ConfigError>,
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Checked<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        let text = value.to_str();
        let reason = match text.map(self.parse) {
            Some(Ok(value)) => return Ok(value),
            Some(Err(reason)) => reason,
            None => "not valid UTF-8".to_owned(),
        };
        let flag = arg.and_then(Arg::get_long).unwrap_or_default();
        let env = arg
            .and_then(Arg::get_env)
            .map(|var| var.to_string_lossy().into_owned());
        let var = env.unwrap_or_else(|| format!("--{flag}"));
        let flag = if var.starts_with("--") { "" } else { flag };
        let hidden = arg.is_some_and(Arg::is_hide_env_values_set);
        let error = match (hidden, text) {
            (false, Some(text)) => ConfigError::new(var, flag, text, reason),
            _ => ConfigError::hidden(var, flag, reason),
        };
        let refused = Refused {
            command: cmd.get_name().to_owned(),
            error: Box::new(error),
        };
        // clap's own function-based parser is the public way to attach a source to a
        // clap error; the source is how `parse` finds the whole `ConfigError` again.
        let carry = move |_: &str| Err::<T, Refused>(refused.clone());
        // The value shown in clap's own rendering (never used for a hidden one).
        let shown: &OsStr = if hidden { OsStr::new("***") } else { value };
        carry.parse_ref(cmd, arg, shown)
    }
}

/// Why the command line and environment could not be read.
#[derive(Debug)]
pub enum ArgsError {
    /// Help, the version, or a usage error (an unknown flag, a missing value): clap
    /// prints them itself, with its usual exit status.
    Clap(clap::Error),
    /// A value that cannot be used.
    Invalid {
        /// The subcommand being run, if any.
        subcommand: Option<String>,
        error: Box<ConfigError>,
    },
}

impl ArgsError {
    /// Reports the error as the binary `bin` and gives the exit status: clap's for
    /// [`ArgsError::Clap`] (0 for help and version), 2 for a configuration error, and
    /// 1 within a [`HEALTHCHECK`].
    pub fn report(&self, bin: &str) -> ExitCode {
        match self {
            ArgsError::Clap(error) => {
                // Printing fails only when stderr or stdout is gone; the status still tells.
                let _ = error.print();
                ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
            }
            ArgsError::Invalid { subcommand, error } => {
                match subcommand {
                    Some(subcommand) => eprintln!("{bin} {subcommand}: {error}"),
                    None => eprintln!("{bin}: {error}"),
                }
                if subcommand.as_deref() == Some(HEALTHCHECK) {
                    ExitCode::FAILURE
                } else {
                    ExitCode::from(2)
                }
            }
        }
    }
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Clap(error) => fmt::Display::fmt(error, f),
            ArgsError::Invalid { error, .. } => fmt::Display::fmt(error, f),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Reads the process's command line and environment into `A`.
pub fn parse<A: Parser>() -> Result<A, ArgsError> {
    try_parse_from(std::env::args_os())
}

/// Reads `argv` (the binary's name first) and the environment into `A`.
pub fn try_parse_from<A, I, T>(argv: I) -> Result<A, ArgsError>
where
    A: Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let error = match A::try_parse_from(&argv) {
        Ok(args) => return Ok(args),
        Err(error) => error,
    };
    let refused = (error.kind() == ErrorKind::ValueValidation)
        .then(|| std::error::Error::source(&error))
        .flatten()
        .and_then(|source| source.downcast_ref::<Refused>());
    let Some(refused) = refused else {
        return Err(ArgsError::Clap(error));
    };
    let root = A::command();
    let subcommand = if refused.command != root.get_name() {
        Some(refused.command.clone())
    } else {
        // A variable of the binary itself was refused; clap reads those after the
        // subcommand, which it can still name when told to pass over errors.
        root.ignore_errors(true)
            .try_get_matches_from(&argv)
            .ok()
            .and_then(|matches| matches.subcommand_name().map(str::to_owned))
    };
    Err(ArgsError::Invalid {
        subcommand,
        error: refused.error.clone(),
    })
}

/// The `--timeout` flag of both `healthcheck` subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckTimeout {
    /// How long to wait for the whole answer (like `2s`, `500ms`).
    #[arg(long, default_value = "2s", value_parser = checked(crate::positive_duration))]
    pub timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Parser)]
    #[command(name = "demo")]
    struct Demo {
        #[command(subcommand)]
        command: Option<Sub>,
        #[arg(long, env = "DEMO_CLI_WAIT", default_value = "1s", value_parser = checked(crate::parse_duration))]
        wait: Duration,
        #[arg(long, env = "DEMO_CLI_SECRET", hide_env_values = true, value_parser = checked(secret))]
        secret: Option<String>,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Healthcheck {
            #[command(flatten)]
            timeout: HealthcheckTimeout,
        },
    }

    fn secret(text: &str) -> Result<String, String> {
        if text.len() < 8 {
            return Err("too short".into());
        }
        Ok(text.to_owned())
    }

    fn parse(argv: &[&str]) -> Result<Demo, ArgsError> {
        try_parse_from::<Demo, _, _>(std::iter::once("demo").chain(argv.iter().copied()))
    }

    #[test]
    fn checked_values_are_typed() {
        let demo = parse(&["--wait", "250ms"]).unwrap();
        assert_eq!(demo.wait, Duration::from_millis(250));
        assert_eq!(parse(&[]).unwrap().wait, Duration::from_secs(1));
        let demo = parse(&["healthcheck", "--timeout", "500ms"]).unwrap();
        let Some(Sub::Healthcheck { timeout }) = demo.command else {
            panic!("healthcheck expected")
        };
        assert_eq!(timeout.timeout, Duration::from_millis(500));
    }

    #[test]
    fn a_refused_value_is_one_line_naming_variable_and_flag() {
        let cases: &[(&[&str], Option<&str>, &str)] = &[
            (
                &["--wait", "soon"],
                None,
                r#"invalid DEMO_CLI_WAIT (--wait) "soon": "#,
            ),
            (
                &["--wait", "10"],
                None,
                r#"invalid DEMO_CLI_WAIT (--wait) "10": 10 has no unit"#,
            ),
            (
                &["--secret", "hunter2"],
                None,
                "invalid DEMO_CLI_SECRET (--secret) (value hidden): too short",
            ),
            (
                &["healthcheck", "--timeout", "soon"],
                Some("healthcheck"),
                r#"invalid --timeout "soon": "#,
            ),
            (
                &["healthcheck", "--timeout", "0s"],
                Some("healthcheck"),
                r#"invalid --timeout "0s": must be more than 0"#,
            ),
        ];
        for (argv, subcommand, line) in cases {
            let Err(ArgsError::Invalid {
                subcommand: got,
                error,
            }) = parse(argv)
            else {
                panic!("{argv:?}: not refused as a value");
            };
            assert_eq!(got.as_deref(), *subcommand, "{argv:?}");
            let text = error.to_string();
            assert!(text.starts_with(line), "{argv:?}: {text}");
            assert!(!text.contains('\n') && !text.contains("hunter2"), "{text}");
        }
    }

    #[test]
    fn usage_errors_and_help_stay_with_clap() {
        for argv in [&["--help"][..], &["--colour"], &["--wait"]] {
            assert!(matches!(parse(argv), Err(ArgsError::Clap(_))), "{argv:?}");
        }
    }
}
