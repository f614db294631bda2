//! The condition language's syntax: a lexer and a recursive-descent parser producing an AST whose
//! every node keeps its byte span in the condition text, so that type errors found later still
//! point at file:line:col.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | primary
//! primary := "(" expr ")" | NAME [test]
//! test    := OP value | "in" "(" item ("," item)* ")" | "in" NAME | STROP value | "exists"
//! item    := value | NAME            (a NAME inside a set is a list reference)
//! value   := STRING | INTEGER | "true" | "false"
//! ```
//! A bare NAME is a macro reference or a boolean field; which one is decided against the catalogue
//! when compiling. Values are always literals: a bare word is never silently taken for a string,
//! so a misspelt list name is an error instead of a literal that never matches.

use std::fmt;
use std::ops::Range;

/// Byte range in the condition text.
pub type Span = Range<usize>;

/// A syntax error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
}

/// A comparison or string operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=` (or `==`).
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `contains`: substring.
    Contains,
    /// `startswith`.
    StartsWith,
    /// `endswith`.
    EndsWith,
    /// `glob`: shell-style pattern (`*`, `?`, `[…]`), matched against the whole value.
    Glob,
    /// `regex`: a regular expression, matched anywhere unless anchored.
    Regex,
    /// `cidr`: an address inside a network.
    Cidr,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Contains => "contains",
            Op::StartsWith => "startswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::Regex => "regex",
            Op::Cidr => "cidr",
        })
    }
}

/// A literal value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    /// A quoted string.
    Str(String),
    /// An integer.
    Int(i64),
    /// `true` or `false`.
    Bool(bool),
}

/// One member of an `in (…)` set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A literal.
    Literal(Literal, Span),
    /// A `[[list]]` reference, expanded when compiling.
    List(String, Span),
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// All of them (two or more): a chain of `and`s is one node, so a long chain costs no depth.
    And(Vec<Expr>),
    /// Any of them (two or more).
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A macro reference or a boolean field, by name.
    Name(String, Span),
    /// `field OP value`.
    Compare { field: String, field_span: Span, op: Op, value: Literal, value_span: Span },
    /// `field in (…)` or `field in list`.
    In { field: String, field_span: Span, items: Vec<Item> },
    /// `field exists`.
    Exists { field: String, field_span: Span },
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Name(String),
    Str(String),
    Int(i64),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

struct Lexed {
    token: Token,
    span: Span,
}

fn lex(text: &str) -> Result<Vec<Lexed>, SyntaxError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        let token = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                // A comment runs to the end of the line: long conditions can be annotated.
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' => {
                i += 1;
                Token::LParen
            }
            b')' => {
                i += 1;
                Token::RParen
            }
            b',' => {
                i += 1;
                Token::Comma
            }
            b'=' => {
                i += if bytes.get(i + 1) == Some(&b'=') { 2 } else { 1 };
                Token::Op(Op::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Token::Op(Op::Ne)
            }
            b'<' | b'>' => {
                let or_equal = bytes.get(i + 1) == Some(&b'=');
                i += if or_equal { 2 } else { 1 };
                Token::Op(match (c, or_equal) {
                    (b'<', false) => Op::Lt,
                    (b'<', true) => Op::Le,
                    (_, false) => Op::Gt,
                    (_, true) => Op::Ge,
                })
            }
            b'"' | b'\'' => {
                let (value, end) = string(text, i)?;
                i = end;
                Token::Str(value)
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let digits = &text[start..i];
                let value = digits.parse::<i64>().map_err(|_| SyntaxError {
                    message: format!("`{digits}` is not an integer"),
                    span: start..i,
                })?;
                Token::Int(value)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.'))
                {
                    i += 1;
                }
                let word = &text[start..i];
                match word {
                    "contains" => Token::Op(Op::Contains),
                    "startswith" => Token::Op(Op::StartsWith),
                    "endswith" => Token::Op(Op::EndsWith),
                    "glob" => Token::Op(Op::Glob),
                    "regex" => Token::Op(Op::Regex),
                    "cidr" => Token::Op(Op::Cidr),
                    _ => Token::Name(word.to_string()),
                }
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(SyntaxError {
                    message: format!("unexpected character `{}`", ch.escape_default()),
                    span: i..i + ch.len_utf8(),
                });
            }
        };
        tokens.push(Lexed { token, span: start..i });
    }
    Ok(tokens)
}

/// A quoted string starting at `start`; returns the value and the offset after the closing quote.
fn string(text: &str, start: usize) -> Result<(String, usize), SyntaxError> {
    let quote = text.as_bytes()[start] as char;
    let mut value = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        let at = start + 1 + offset;
        match c {
            c if c == quote => return Ok((value, at + 1)),
            '\\' => {
                let Some((_, escaped)) = chars.next() else { break };
                value.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    '\\' | '"' | '\'' => escaped,
                    other => {
                        return Err(SyntaxError {
                            message: format!("unknown escape `\\{}`", other.escape_default()),
                            span: at..at + 1 + other.len_utf8(),
                        });
                    }
                });
            }
            c => value.push(c),
        }
    }
    Err(SyntaxError { message: "unterminated string".into(), span: start..text.len() })
}

/// How deep `(` and `not` may nest. Rules are read at start and on every reload: a condition
/// nested ten thousand deep must be an error in its file, not a stack overflow that aborts the
/// agent every time it starts. Real conditions nest a few levels.
pub const MAX_NESTING: usize = 64;

/// Parses a condition.
pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let tokens = lex(text)?;
    let mut parser = Parser { tokens, at: 0, end: text.len(), depth: 0 };
    if parser.tokens.is_empty() {
        return Err(SyntaxError { message: "empty condition".into(), span: 0..text.len() });
    }
    let expr = parser.or()?;
    match parser.tokens.get(parser.at) {
        None => Ok(expr),
        Some(extra) => Err(SyntaxError {
            message: format!("expected `and`, `or` or the end, found {}", describe(&extra.token)),
            span: extra.span.clone(),
        }),
    }
}

struct Parser {
    tokens: Vec<Lexed>,
    at: usize,
    end: usize,
    /// `(` and `not` open around the token being parsed.
    depth: usize,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Name(name) => format!("`{name}`"),
        Token::Str(s) => format!("string {s:?}"),
        Token::Int(n) => format!("integer {n}"),
        Token::Op(op) => format!("`{op}`"),
        Token::LParen => "`(`".into(),
        Token::RParen => "`)`".into(),
        Token::Comma => "`,`".into(),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|t| &t.token)
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Name(n)) if n == keyword)
    }

    fn next(&mut self, expected: &str) -> Result<(Token, Span), SyntaxError> {
        match self.tokens.get(self.at) {
            Some(lexed) => {
                self.at += 1;
                Ok((lexed.token.clone(), lexed.span.clone()))
            }
            None => Err(SyntaxError {
                message: format!("expected {expected}, found the end of the condition"),
                span: self.end..self.end,
            }),
        }
    }

    fn unexpected<T>(&self, expected: &str, token: &Token, span: Span) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            message: format!("expected {expected}, found {}", describe(token)),
            span,
        })
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut operands = vec![self.and()?];
        while self.peek_keyword("or") {
            self.at += 1;
            operands.push(self.and()?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Expr::Or(operands) })
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut operands = vec![self.unary()?];
        while self.peek_keyword("and") {
            self.at += 1;
            operands.push(self.unary()?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Expr::And(operands) })
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        if self.peek_keyword("not") {
            let span = self.tokens[self.at].span.clone();
            self.at += 1;
            let inner = self.nested(span, Parser::unary)?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    /// Parses with one more level of nesting, refused beyond `MAX_NESTING` at `opening`.
    fn nested(
        &mut self,
        opening: Span,
        parse: fn(&mut Parser) -> Result<Expr, SyntaxError>,
    ) -> Result<Expr, SyntaxError> {
        if self.depth == MAX_NESTING {
            return Err(SyntaxError {
                message: format!("nested deeper than {MAX_NESTING} levels of `(` and `not`"),
                span: opening,
            });
        }
        self.depth += 1;
        let inner = parse(self);
        self.depth -= 1;
        inner
    }

    fn primary(&mut self) -> Result<Expr, SyntaxError> {
        let (token, span) = self.next("a field, a macro, `not` or `(`")?;
        let name = match token {
            Token::LParen => {
                let inner = self.nested(span, Parser::or)?;
                return match self.next("`)`")? {
                    (Token::RParen, _) => Ok(inner),
                    (other, span) => self.unexpected("`)`", &other, span),
                };
            }
            Token::Name(name) if !is_reserved(&name) => name,
            other => return self.unexpected("a field, a macro, `not` or `(`", &other, span),
        };
        match self.peek() {
            Some(Token::Op(op)) => {
                let op = *op;
                self.at += 1;
                let (value, value_span) = self.literal()?;
                Ok(Expr::Compare { field: name, field_span: span, op, value, value_span })
            }
            Some(Token::Name(word)) if word == "in" => {
                self.at += 1;
                let items = self.set()?;
                Ok(Expr::In { field: name, field_span: span, items })
            }
            Some(Token::Name(word)) if word == "exists" => {
                self.at += 1;
                Ok(Expr::Exists { field: name, field_span: span })
            }
            _ => Ok(Expr::Name(name, span)),
        }
    }

    fn literal(&mut self) -> Result<(Literal, Span), SyntaxError> {
        match self.next("a value")? {
            (Token::Str(s), span) => Ok((Literal::Str(s), span)),
            (Token::Int(n), span) => Ok((Literal::Int(n), span)),
            (Token::Name(word), span) if word == "true" || word == "false" => {
                Ok((Literal::Bool(word == "true"), span))
            }
            (Token::Name(word), span) => Err(SyntaxError {
                message: format!(
                    "expected a value, found `{word}`: strings are quoted, and lists go in `in (…)`"
                ),
                span,
            }),
            (other, span) => self.unexpected("a value", &other, span),
        }
    }

    fn set(&mut self) -> Result<Vec<Item>, SyntaxError> {
        match self.next("`(` or a list name")? {
            (Token::Name(list), span) if !is_reserved(&list) => {
                return Ok(vec![Item::List(list, span)]);
            }
            (Token::LParen, _) => {}
            (other, span) => return self.unexpected("`(` or a list name", &other, span),
        }
        let mut items = Vec::new();
        loop {
            let item = match self.next("a value or a list name")? {
                (Token::Name(list), span) if !is_reserved(&list) => Item::List(list, span),
                (Token::Name(word), span) if word == "true" || word == "false" => {
                    Item::Literal(Literal::Bool(word == "true"), span)
                }
                (Token::Str(s), span) => Item::Literal(Literal::Str(s), span),
                (Token::Int(n), span) => Item::Literal(Literal::Int(n), span),
                (other, span) => return self.unexpected("a value or a list name", &other, span),
            };
            items.push(item);
            match self.next("`,` or `)`")? {
                (Token::Comma, _) => continue,
                (Token::RParen, _) => return Ok(items),
                (other, span) => return self.unexpected("`,` or `)`", &other, span),
            }
        }
    }
}

fn is_reserved(word: &str) -> bool {
    matches!(word, "and" | "or" | "not" | "in" | "exists" | "true" | "false")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, span: Span) -> Expr {
        Expr::Name(n.into(), span)
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let expr = parse("a or not b and c").unwrap();
        let expected = Expr::Or(vec![
            name("a", 0..1),
            Expr::And(vec![Expr::Not(Box::new(name("b", 9..10))), name("c", 15..16)]),
        ]);
        assert_eq!(expr, expected);
    }

    #[test]
    fn comparisons_sets_and_existence() {
        let expr = parse(r#"proc.pid >= 10 and sock.raddr cidr '10.0.0.0/8'"#).unwrap();
        let Expr::And(operands) = expr else { panic!("{expr:?}") };
        assert!(matches!(operands[0], Expr::Compare { op: Op::Ge, value: Literal::Int(10), .. }));
        assert!(matches!(operands[1], Expr::Compare { op: Op::Cidr, .. }));
        let set = parse(r#"proc.name in ("a\"b", shells, 3)"#).unwrap();
        let Expr::In { items, .. } = set else { panic!() };
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[0], Item::Literal(Literal::Str(s), _) if s == "a\"b"));
        assert!(matches!(&items[1], Item::List(l, span) if l == "shells" && *span == (22..28)));
        assert!(matches!(parse("sock.raddr exists").unwrap(), Expr::Exists { .. }));
        assert!(matches!(parse("proc.name in shells").unwrap(), Expr::In { .. }));
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let cases = [
            ("proc.name = bash", 12..16),
            ("(a and b", 8..8),
            ("a and", 5..5),
            ("a b", 2..3),
            ("proc.name = \"x", 12..14),
            ("proc.pid = 99999999999999999999", 11..31),
            ("proc.name in (\"a\" \"b\")", 18..21),
            ("a & b", 2..3),
            ("", 0..0),
            ("and", 0..3),
        ];
        for (text, span) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.span, span, "{text}: {error:?}");
        }
    }

    #[test]
    fn comments_run_to_the_end_of_the_line() {
        let expected = Expr::Or(vec![name("a", 0..1), name("b", 12..13)]);
        assert_eq!(parse("a # why\n or b").unwrap(), expected);
    }

    #[test]
    fn deep_nesting_is_an_error_at_the_level_too_many_and_long_chains_are_flat() {
        for (open, close) in [("(", ")"), ("not ", ""), ("not (", ")")] {
            let text = format!("{}a{}", open.repeat(10_000), close.repeat(10_000));
            let error = parse(&text).unwrap_err();
            assert!(error.message.contains("nested deeper than 64"), "{error:?}");
            // The first `(` or `not` too many.
            let opening = text.match_indices(['(', 'n']).nth(MAX_NESTING).unwrap().0;
            assert_eq!(error.span.start, opening, "{open:?}");
            let fits = format!("{}a{}", open.repeat(32), close.repeat(32));
            assert!(parse(&fits).is_ok(), "{open:?} nested 32 levels");
        }
        let chain = vec!["a"; 100_000].join(" and ");
        let Expr::And(operands) = parse(&chain).unwrap() else { panic!() };
        assert_eq!(operands.len(), 100_000);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,64}") {
            let _ = parse(&text);
        }

        #[test]
        fn error_spans_stay_inside_the_text(text in "[a-z.()=!<>,\"' 0-9]{0,40}") {
            if let Err(e) = parse(&text) {
                proptest::prop_assert!(e.span.start <= e.span.end && e.span.end <= text.len());
            }
        }
    }
}
