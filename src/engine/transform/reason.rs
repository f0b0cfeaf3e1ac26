//! How a value is written into a reason: its kind name, and the value itself quoted,
//! shortened and with control characters escaped. `validate` uses these too, so a transform
//! and a check word the same value the same way.

use std::fmt;

use crate::engine::value::Value;

pub(crate) fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Real(_) => "real",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Json(_) => "json",
    }
}

/// Longest stretch of a value quoted in a reason; reports must stay readable.
const QUOTE_MAX_CHARS: usize = 60;

/// Displays text in single quotes, shortened and with control characters escaped, so a stray
/// multi-kilobyte or multi-line value cannot wreck a report line.
pub(crate) struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        f.write_char('\'')?;
        for (i, c) in self.0.chars().enumerate() {
            if i == QUOTE_MAX_CHARS {
                f.write_char('…')?;
                break;
            }
            write_shown(f, c)?;
        }
        f.write_char('\'')
    }
}

/// Displays text whole with its control characters escaped (`\u{0}`, `\u{1b}`): a key that is
/// shown, never obeyed by the terminal.
pub(crate) struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.chars().try_for_each(|c| write_shown(f, c))
    }
}

/// One character as `Quoted` and `Escaped` show it.
fn write_shown(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    use fmt::Write;
    if c.is_control() {
        write!(f, "{}", c.escape_default())
    } else {
        f.write_char(c)
    }
}

/// Displays any value for a reason: text quoted, bytes summarised, others as their text form.
pub(crate) struct Shown<'a>(pub &'a Value);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Null => f.write_str("NULL"),
            Value::Text(s) => Quoted(s).fmt(f),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.bytes_len),
            Value::Json(j) => Quoted(&j.to_string()).fmt(f),
            other => Quoted(&other.to_text().unwrap_or_default()).fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::transform::Transform;
    use crate::engine::transform::testing::{err, text};

    #[test]
    fn long_values_are_shortened_in_reasons() {
        let long = "y".repeat(500);
        let r = err(&Transform::Boolean, text(&long));
        assert!(r.len() < 200, "{r}");
        assert!(r.contains("…'"));
        let r = err(&Transform::Boolean, text("a\nb"));
        assert!(r.contains("'a\\nb'"), "{r}");
    }
}
