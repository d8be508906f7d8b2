//! Short, escaped excerpts of client-sent text, for logs and error messages.
//!
//! Fields such as `screen`, `error_key` and `error_message` come from the client. Quoted
//! whole and raw, a newline in them forges a log line, an ANSI escape recolours a
//! terminal, and a long value overflows the HTTP/2 header a gRPC status travels in.
//! [`excerpt`] is the one way both services quote them.

/// The most characters a gRPC status message quotes of a request value.
pub const STATUS_EXCERPT_CHARS: usize = 64;

/// The most characters a log line quotes of a client-sent value.
pub const LOG_EXCERPT_CHARS: usize = 256;

/// `value` quoted and escaped as Rust's `{:?}` does (control characters, quotes and
/// backslashes escaped), cut to its first `max_chars` characters, with `…` after the
/// closing quote when it was cut.
pub fn excerpt(value: &str, max_chars: usize) -> String {
    match value.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(excerpt("a\nb\x1b[31mc\"", 64), r#""a\nb\u{1b}[31mc\"""#);
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        assert_eq!(excerpt("abcdef", 3), "\"abc\"…");
        assert_eq!(excerpt("ééé", 2), "\"éé\"…");
        assert_eq!(excerpt("abc", 3), "\"abc\"");
        assert_eq!(
            excerpt(&"x".repeat(20_000), 64).len(),
            64 + 2 + '…'.len_utf8()
        );
    }
}
