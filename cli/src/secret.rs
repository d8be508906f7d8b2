//! Secrets given either as a variable's value or as a file holding it: the bearer
//! token of the gRPC hop (`FLOWGATE_BACKEND_AUTH_TOKEN[_FILE]`,
//! `FLOW_SERVICE_AUTH_TOKEN[_FILE]`) and the flow service's database URL, which holds
//! its password (`FLOW_SERVICE_DATABASE_URL[_FILE]`).

use std::path::Path;

use crate::ConfigError;

/// The shortest bearer token accepted, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// Where a secret may be set: a variable with its flag, and the `_FILE` variable with
/// its flag.
#[derive(Debug, Clone, Copy)]
pub struct SecretVars {
    pub var: &'static str,
    pub flag: &'static str,
    pub file_var: &'static str,
    pub file_flag: &'static str,
}

/// A secret from `value` or from the trimmed contents of `file`, with the variable and
/// flag it came from, or `None` when neither is set. Both set, or a file that cannot be
/// read or holds nothing, is an error naming the variable; `what` names the secret in
/// it ("token", "URL"), and the secret itself is never repeated.
pub fn secret(
    value: Option<&str>,
    file: Option<&Path>,
    vars: SecretVars,
    what: &str,
) -> Result<Option<(String, &'static str, &'static str)>, ConfigError> {
    match (value, file) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ConfigError::hidden(
            vars.var,
            vars.flag,
            format!("set {} or {}, not both", vars.var, vars.file_var),
        )),
        (Some(value), None) => Ok(Some((value.trim().to_owned(), vars.var, vars.flag))),
        (None, Some(path)) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    vars.file_var,
                    vars.file_flag,
                    &shown,
                    format!("cannot read the {what} file: {e}"),
                )
            })?;
            let secret = text.trim().to_owned();
            if secret.is_empty() {
                return Err(ConfigError::new(
                    vars.file_var,
                    vars.file_flag,
                    &shown,
                    format!("the {what} file is empty"),
                ));
            }
            Ok(Some((secret, vars.file_var, vars.file_flag)))
        }
    }
}

/// The bearer token from `value` or from the trimmed contents of `file` ([`secret`]),
/// or `None` when neither is set. Beyond [`secret`]'s refusals, a token that is too
/// short or not printable ASCII without spaces (it travels in a header) is an error
/// naming the variable; the token itself is never repeated.
pub fn bearer_token(
    value: Option<&str>,
    file: Option<&Path>,
    vars: SecretVars,
) -> Result<Option<String>, ConfigError> {
    let Some((token, var, flag)) = secret(value, file, vars, "token")? else {
        return Ok(None);
    };
    if token.is_empty() {
        return Err(ConfigError::hidden(var, flag, "the token is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::hidden(
            var,
            flag,
            "the token must be printable ASCII without spaces (it travels in a header)",
        ));
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(ConfigError::hidden(
            var,
            flag,
            format!(
                "the token has {} bytes; use at least {MIN_TOKEN_LEN} (`flowgate-gateway gen-token PATH` makes one)",
                token.len()
            ),
        ));
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: SecretVars = SecretVars {
        var: "X_TOKEN",
        flag: "token",
        file_var: "X_TOKEN_FILE",
        file_flag: "token-file",
    };

    #[test]
    fn from_a_value_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  abcdefghijklmnopqrstuvwxyz\n").unwrap();
        assert_eq!(bearer_token(None, None, VARS).unwrap(), None);
        assert_eq!(
            bearer_token(Some("0123456789abcdef"), None, VARS).unwrap(),
            Some("0123456789abcdef".to_owned())
        );
        assert_eq!(
            bearer_token(None, Some(&file), VARS).unwrap(),
            Some("abcdefghijklmnopqrstuvwxyz".to_owned())
        );
    }

    #[test]
    fn refusals_name_the_variable_and_hide_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let missing = dir.path().join("missing");
        let cases: [(Option<&str>, Option<&Path>, &str, &str); 6] = [
            (Some("short-token"), None, "X_TOKEN", "has 11 bytes"),
            (
                Some("with a space in it!"),
                None,
                "X_TOKEN",
                "printable ASCII",
            ),
            (Some("   "), None, "X_TOKEN", "empty"),
            (
                Some("0123456789abcdef"),
                Some(&empty),
                "X_TOKEN",
                "not both",
            ),
            (
                None,
                Some(&empty),
                "X_TOKEN_FILE",
                "the token file is empty",
            ),
            (
                None,
                Some(&missing),
                "X_TOKEN_FILE",
                "cannot read the token file",
            ),
        ];
        for (value, file, var, reason) in cases {
            let err = bearer_token(value, file, VARS).unwrap_err();
            assert_eq!(err.var, var, "{err}");
            let line = err.to_string();
            assert!(line.contains(reason), "{line}");
            assert!(
                !line.contains("short-token") && !line.contains("in it!"),
                "{line}"
            );
        }
    }
}
