//! Message templates: text with `{field}` placeholders (`{{` and `}}` for literal braces), checked
//! against the catalogue at load and rendered from the subject that matched. Values from /proc
//! are escaped visibly, so a message cannot carry a newline or a bidi override into a SIEM.

use super::compile::CompileError;
use super::fields::{self, Field, Value};
use super::subject::{Context, Subject};
use crate::model::escape_visible;

enum Part {
    Text(String),
    Field(&'static Field),
}

/// A parsed template.
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses a template; an unknown field or an unbalanced brace is an error at its position.
    pub fn parse(text: &str) -> Result<Template, CompileError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, n)| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let Some(close) = text[i..].find('}') else {
                        return Err(CompileError {
                            message: "unclosed `{` (write `{{` for a brace)".into(),
                            span: i..i + 1,
                        });
                    };
                    let name = text[i + 1..i + close].trim();
                    let Some(field) = fields::field(name) else {
                        return Err(CompileError {
                            message: format!("unknown field `{name}` in the message"),
                            span: i + 1..i + close,
                        });
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(field));
                    while chars.peek().is_some_and(|(j, _)| *j <= i + close) {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(CompileError {
                        message: "unmatched `}` (write `}}` for a brace)".into(),
                        span: i..i + 1,
                    });
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The message for one subject.
    pub fn render(&self, subject: &Subject<'_>, cx: &Context<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(field) => out.push_str(&show((field.get)(subject, cx))),
            }
        }
        out
    }
}

fn show(value: Value<'_>) -> String {
    match value {
        Value::Str(s) => escape_visible(s.as_bytes()),
        Value::Int(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Ip(addr) => addr.to_string(),
        Value::Strs(v) => {
            let shown: Vec<String> = v.iter().map(|s| escape_visible(s.as_bytes())).collect();
            format!("[{}]", shown.join(", "))
        }
        Value::Ints(v) => {
            let shown: Vec<String> = v.iter().map(i64::to_string).collect();
            format!("[{}]", shown.join(", "))
        }
        Value::IntBits(mask) => {
            let shown: Vec<String> = Value::bits(mask).map(|n| n.to_string()).collect();
            format!("[{}]", shown.join(", "))
        }
        Value::NameBits(mask, names) => {
            let shown: Vec<&str> =
                Value::bits(mask).filter_map(|n| names.get(n).copied()).collect();
            format!("[{}]", shown.join(", "))
        }
        Value::Absent => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_must_name_fields_and_braces_balance() {
        assert!(Template::parse("{proc.exe} ({proc.pid}) -> {sock.raddr}:{{x}}").is_ok());
        let e = Template::parse("shell {proc.exee}").err().unwrap();
        assert_eq!(
            (e.message.as_str(), e.span),
            ("unknown field `proc.exee` in the message", 7..16)
        );
        assert_eq!(Template::parse("a { b").err().unwrap().span, 2..3);
        assert_eq!(Template::parse("a } b").err().unwrap().span, 2..3);
    }
}
