//! Type check and compilation: an AST becomes a closure over a subject. Every field name is looked
//! up in the catalogue, every operator checked against the field's type, every literal converted
//! once (addresses parsed, patterns and regexes built, lists expanded into sets), so evaluation
//! does no parsing and cannot fail. Errors carry the span of the offending token; all of one
//! condition's errors are returned together.

use super::fields::{self, Field, Kind, Value};
use super::subject::{Context, Subject};
use super::syntax::{Expr, Item, Literal, Op, Span};
use ipnet::IpNet;
use rustc_hash::FxHashSet as HashSet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A compiled condition.
pub type Predicate = Arc<dyn Fn(&Subject<'_>, &Context<'_>) -> bool + Send + Sync>;

/// A compiled condition and what evaluating it costs, relative to reading one scalar field (2).
/// The operands of each `and` and `or` run cheapest first: conditions have no side effects, so
/// the order changes only how soon the answer is known (`outbound_connection and stdio.via =
/// "direct"` looks at the one bit before the half-dozen socket tests).
#[derive(Clone)]
pub struct Compiled {
    /// The condition.
    pub predicate: Predicate,
    /// Its cost.
    pub cost: u32,
    /// It reads only the process (`proc.*` fields and macros made of them): the same for all of a
    /// process's subjects.
    pub process_only: bool,
    /// A condition on the process alone that must hold for this one to: the process-only
    /// operands of a top-level `and`. When it fails, none of the process's subjects can match,
    /// and the rule is not evaluated on them.
    pub gate: Option<Predicate>,
}

impl Compiled {
    fn new(predicate: Predicate, cost: u32, process_only: bool) -> Self {
        let gate = process_only.then(|| Arc::clone(&predicate));
        Compiled { predicate, cost, process_only, gate }
    }
}

/// A problem in one condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// What is wrong.
    pub message: String,
    /// Where, in the condition text.
    pub span: Span,
}

/// A `[[list]]`'s items.
pub type ListItems = Vec<Literal>;

/// What conditions may refer to besides fields.
pub struct Scope<'a> {
    /// Lists by name.
    pub lists: &'a HashMap<String, ListItems>,
    /// Compiled macros by name; `None` for a macro that failed to compile (already reported).
    pub macros: &'a HashMap<String, Option<Compiled>>,
}

/// Wraps a macro so that one subject (or, when it reads only the process, one process) evaluates
/// it once, however many rules use it (`shell` is in most of the default pack's rules).
pub fn memoized(index: usize, compiled: Compiled) -> Compiled {
    if index >= Subject::MEMO_SLOTS {
        return compiled;
    }
    let Compiled { predicate, cost, process_only, .. } = compiled;
    match process_only {
        false => {
            Compiled::new(Arc::new(move |s, cx| s.memo(index, || predicate(s, cx))), cost, false)
        }
        // Evaluated once for all of a process's subjects: after the first, a bit test.
        true => Compiled::new(
            Arc::new(move |s, cx| s.process_memo(index, || predicate(s, cx))),
            1,
            true,
        ),
    }
}

/// Compiles a condition, or returns every error in it.
pub fn compile(expr: &Expr, scope: &Scope<'_>) -> Result<Compiled, Vec<CompileError>> {
    let mut errors = Vec::new();
    let compiled = node(expr, scope, &mut errors);
    match compiled {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(errors),
    }
}

fn error(errors: &mut Vec<CompileError>, span: &Span, message: String) {
    errors.push(CompileError { message, span: span.clone() });
}

fn node(expr: &Expr, scope: &Scope<'_>, errors: &mut Vec<CompileError>) -> Option<Compiled> {
    match expr {
        Expr::And(..) | Expr::Or(..) => chain(expr, scope, errors),
        Expr::Not(a) => {
            let Compiled { predicate: a, cost, process_only, .. } = node(a, scope, errors)?;
            Some(Compiled::new(Arc::new(move |s, cx| !a(s, cx)), cost, process_only))
        }
        Expr::Name(name, span) => name_reference(name, span, scope, errors),
        Expr::Exists { field, field_span } => {
            let field = lookup(field, field_span, errors)?;
            let get = field.get;
            let predicate: Predicate = Arc::new(move |s, cx| match get(s, cx) {
                Value::Absent => false,
                Value::Strs(v) => !v.is_empty(),
                Value::Ints(v) => !v.is_empty(),
                Value::IntBits(mask) | Value::NameBits(mask, _) => mask != 0,
                _ => true,
            });
            Some(Compiled::new(predicate, field.cost(), reads_the_process(field)))
        }
        Expr::Compare { field, field_span, op, value, value_span } => {
            let field = lookup(field, field_span, errors)?;
            let test = comparison(field, *op, value, value_span, errors)?;
            Some(tested(field, test, *op == Op::Ne))
        }
        Expr::In { field, field_span, items } => {
            let field = lookup(field, field_span, errors)?;
            let test = membership(field, items, scope, errors)?;
            Some(tested(field, test, false))
        }
    }
}

/// A run of `and`s (or of `or`s), flattened and ordered cheapest first.
fn chain(expr: &Expr, scope: &Scope<'_>, errors: &mut Vec<CompileError>) -> Option<Compiled> {
    // `(a and b) and c` is one chain too; the recursion is as deep as the parentheses.
    fn operands<'e>(expr: &'e Expr, and: bool, out: &mut Vec<&'e Expr>) {
        match (expr, and) {
            (Expr::And(all), true) | (Expr::Or(all), false) => {
                all.iter().for_each(|e| operands(e, and, out));
            }
            _ => out.push(expr),
        }
    }
    let and = matches!(expr, Expr::And(..));
    let mut exprs = Vec::new();
    operands(expr, and, &mut exprs);
    // Every operand is compiled, so that all of their errors are reported.
    let compiled: Vec<Option<Compiled>> = exprs.iter().map(|e| node(e, scope, errors)).collect();
    let mut compiled: Vec<Compiled> = compiled.into_iter().collect::<Option<_>>()?;
    compiled.sort_by_key(|c| c.cost);
    let cost = compiled.iter().map(|c| c.cost).sum();
    let process_only = compiled.iter().all(|c| c.process_only);
    let gates: Vec<Predicate> = compiled.iter().filter_map(|c| c.gate.clone()).collect();
    let predicates: Vec<Predicate> = compiled.into_iter().map(|c| c.predicate).collect();
    let predicate = all_or_any(predicates, and);
    let gate = match (and, gates.is_empty()) {
        // Every operand must hold: so must each one's gate.
        (true, false) => Some(all_or_any(gates, true)),
        // One operand is enough: the process decides only if it decides every one.
        _ if process_only => Some(Arc::clone(&predicate)),
        _ => None,
    };
    Some(Compiled { predicate, cost, process_only, gate })
}

fn all_or_any(mut predicates: Vec<Predicate>, and: bool) -> Predicate {
    if predicates.len() == 1 {
        return predicates.remove(0);
    }
    match and {
        true => Arc::new(move |s, cx| predicates.iter().all(|p| p(s, cx))),
        false => Arc::new(move |s, cx| predicates.iter().any(|p| p(s, cx))),
    }
}

/// A field of the process, the same for all of its subjects.
fn reads_the_process(field: &Field) -> bool {
    field.name.starts_with("proc.")
}

fn lookup(name: &str, span: &Span, errors: &mut Vec<CompileError>) -> Option<&'static Field> {
    let found = fields::field(name);
    if found.is_none() {
        error(errors, span, format!("unknown field `{name}`{}", suggestion(name)));
    }
    found
}

/// The closest catalogue name, when one is close enough to be a typo.
fn suggestion(name: &str) -> String {
    let best = fields::FIELDS
        .iter()
        .map(|f| (edit_distance(name, f.name), f.name))
        .min()
        .filter(|(d, _)| *d <= 3);
    best.map_or(String::new(), |(_, f)| format!(" (did you mean `{f}`?)"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn name_reference(
    name: &str,
    span: &Span,
    scope: &Scope<'_>,
    errors: &mut Vec<CompileError>,
) -> Option<Compiled> {
    if let Some(compiled) = scope.macros.get(name) {
        if compiled.is_none() {
            error(errors, span, format!("macro `{name}` has errors (reported at its definition)"));
        }
        return compiled.clone();
    }
    match fields::field(name) {
        Some(field) if field.kind == Kind::Bool && !field.is_list() => {
            let get = field.get;
            let predicate: Predicate = Arc::new(move |s, cx| get(s, cx) == Value::Bool(true));
            Some(Compiled::new(predicate, field.cost(), reads_the_process(field)))
        }
        Some(field) => {
            let kind = field.type_name();
            let a = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            error(
                errors,
                span,
                format!("`{name}` is {a} {kind} field, not a condition: compare it"),
            );
            None
        }
        None if name.contains('.') => {
            error(errors, span, format!("unknown field `{name}`{}", suggestion(name)));
            None
        }
        None => {
            error(errors, span, format!("undefined macro `{name}`"));
            None
        }
    }
}

/// Up to this many strings are compared in turn rather than looked up in a set.
const FEW: usize = 4;

/// A test on one scalar value.
enum Test {
    Str(StrTest),
    Int(Op, i64),
    IntIn(HashSet<i64>),
    Bool(bool),
    Ip(Vec<IpNet>),
}

enum StrTest {
    /// Equal to one of a few strings: compared in turn, cheaper than hashing.
    InFew(Vec<String>),
    In(HashSet<String>),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Glob(globset::GlobMatcher),
    Regex(regex::Regex),
}

impl Test {
    /// What the test itself costs, beyond reading the field.
    fn cost(&self) -> u32 {
        match self {
            Test::Str(StrTest::Regex(_)) => 8,
            Test::Str(StrTest::Glob(_)) => 4,
            _ => 1,
        }
    }

    fn str(&self, s: &str) -> bool {
        match self {
            Test::Str(StrTest::InFew(few)) => few.iter().any(|x| x == s),
            Test::Str(StrTest::In(set)) => set.contains(s),
            Test::Str(StrTest::Contains(x)) => s.contains(x.as_str()),
            Test::Str(StrTest::StartsWith(x)) => s.starts_with(x.as_str()),
            Test::Str(StrTest::EndsWith(x)) => s.ends_with(x.as_str()),
            Test::Str(StrTest::Glob(g)) => g.is_match(s),
            Test::Str(StrTest::Regex(r)) => r.is_match(s),
            _ => false,
        }
    }

    fn int(&self, n: i64) -> bool {
        match self {
            Test::Int(Op::Eq | Op::Ne, x) => n == *x,
            Test::Int(Op::Lt, x) => n < *x,
            Test::Int(Op::Le, x) => n <= *x,
            Test::Int(Op::Gt, x) => n > *x,
            Test::Int(Op::Ge, x) => n >= *x,
            Test::IntIn(set) => set.contains(&n),
            _ => false,
        }
    }

    fn holds(&self, value: &Value<'_>) -> bool {
        match value {
            Value::Str(s) => self.str(s),
            Value::Strs(v) => v.iter().any(|s| self.str(s)),
            Value::Int(n) => self.int(*n),
            Value::Ints(v) => v.iter().any(|n| self.int(*n)),
            Value::IntBits(mask) => Value::bits(*mask).any(|n| self.int(n as i64)),
            Value::NameBits(mask, names) => {
                Value::bits(*mask).any(|n| names.get(n).is_some_and(|name| self.str(name)))
            }
            Value::Bool(b) => matches!(self, Test::Bool(x) if x == b),
            Value::Ip(addr) => {
                matches!(self, Test::Ip(nets) if nets.iter().any(|n| n.contains(addr)))
            }
            Value::Absent => false,
        }
    }
}

fn tested(field: &'static Field, test: Test, negate: bool) -> Compiled {
    let get = field.get;
    let cost = field.cost() + test.cost();
    let predicate: Predicate = Arc::new(move |s, cx| test.holds(&get(s, cx)) != negate);
    Compiled::new(predicate, cost, reads_the_process(field))
}

fn comparison(
    field: &Field,
    op: Op,
    value: &Literal,
    span: &Span,
    errors: &mut Vec<CompileError>,
) -> Option<Test> {
    let allowed: &[Op] = match field.kind {
        Kind::Str => {
            &[Op::Eq, Op::Ne, Op::Contains, Op::StartsWith, Op::EndsWith, Op::Glob, Op::Regex]
        }
        Kind::Int => &[Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge],
        Kind::Bool => &[Op::Eq, Op::Ne],
        Kind::Ip => &[Op::Eq, Op::Ne, Op::Cidr],
    };
    if !allowed.contains(&op) {
        let list: Vec<String> = allowed.iter().map(|o| format!("`{o}`")).collect();
        let message = format!(
            "`{op}` does not apply to `{}` ({}); use {}",
            field.name,
            field.type_name(),
            list.join(", ")
        );
        error(errors, span, message);
        return None;
    }
    let test = match (field.kind, value) {
        (Kind::Str, Literal::Str(s)) => Test::Str(match op {
            Op::Eq | Op::Ne => StrTest::InFew(vec![s.clone()]),
            Op::Contains => StrTest::Contains(s.clone()),
            Op::StartsWith => StrTest::StartsWith(s.clone()),
            Op::EndsWith => StrTest::EndsWith(s.clone()),
            Op::Glob => match globset::Glob::new(s) {
                Ok(glob) => StrTest::Glob(glob.compile_matcher()),
                Err(e) => {
                    error(errors, span, format!("bad glob pattern: {}", e.kind()));
                    return None;
                }
            },
            _ => match regex::Regex::new(s) {
                Ok(r) => StrTest::Regex(r),
                Err(e) => {
                    let text = e.to_string();
                    let last = text.lines().last().unwrap_or("").trim();
                    let detail = last.strip_prefix("error: ").unwrap_or(last).to_string();
                    error(errors, span, format!("bad regex: {detail}"));
                    return None;
                }
            },
        }),
        (Kind::Int, Literal::Int(n)) => Test::Int(op, *n),
        (Kind::Bool, Literal::Bool(b)) => Test::Bool(*b),
        (Kind::Ip, Literal::Str(s)) => Test::Ip(vec![network(s, op == Op::Cidr, span, errors)?]),
        (kind, literal) => {
            let message = format!(
                "`{}` is {} {}, but this is {}",
                field.name,
                article(kind),
                kind.name(),
                literal_kind(literal)
            );
            error(errors, span, message);
            return None;
        }
    };
    Some(test)
}

fn article(kind: Kind) -> &'static str {
    if kind == Kind::Int || kind == Kind::Ip { "an" } else { "a" }
}

fn literal_kind(literal: &Literal) -> &'static str {
    match literal {
        Literal::Str(_) => "a string",
        Literal::Int(_) => "an integer",
        Literal::Bool(_) => "a bool",
    }
}

/// An address (a host network) or, where allowed, a CIDR network.
fn network(text: &str, cidr: bool, span: &Span, errors: &mut Vec<CompileError>) -> Option<IpNet> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(IpNet::from(normalise(addr)));
    }
    match text.parse::<IpNet>() {
        Ok(net) if cidr => Some(match net {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                // `::ffff:10.0.0.0/104` is the v4 network 10.0.0.0/8: addresses are normalised.
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::new(v4.into(), v6.prefix_len() - 96).unwrap_or(net)
                }
                _ => net,
            },
            v4 => v4,
        }),
        Ok(_) => {
            error(errors, span, format!("`{text}` is a network: use `cidr` or `in`"));
            None
        }
        Err(_) => {
            let what = if cidr { "an address or CIDR network" } else { "an IP address" };
            error(errors, span, format!("`{text}` is not {what}"));
            None
        }
    }
}

fn normalise(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn membership(
    field: &Field,
    items: &[Item],
    scope: &Scope<'_>,
    errors: &mut Vec<CompileError>,
) -> Option<Test> {
    let before = errors.len();
    let mut values: Vec<(&Literal, Span)> = Vec::new();
    for item in items {
        match item {
            Item::Literal(literal, span) => values.push((literal, span.clone())),
            Item::List(name, span) => match scope.lists.get(name) {
                Some(list) => values.extend(list.iter().map(|l| (l, span.clone()))),
                None => error(errors, span, format!("undefined list `{name}`")),
            },
        }
    }
    let mut strs = HashSet::default();
    let mut ints = HashSet::default();
    let mut nets = Vec::new();
    for (literal, span) in values {
        match (field.kind, literal) {
            (Kind::Str, Literal::Str(s)) => {
                strs.insert(s.clone());
            }
            (Kind::Int, Literal::Int(n)) => {
                ints.insert(*n);
            }
            (Kind::Ip, Literal::Str(s)) => {
                if let Some(net) = network(s, true, &span, errors) {
                    nets.push(net);
                }
            }
            (kind, literal) => {
                let message = format!(
                    "`{}` is {} {}, but the set holds {}",
                    field.name,
                    article(kind),
                    kind.name(),
                    literal_kind(literal)
                );
                error(errors, &span, message);
            }
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(match field.kind {
        Kind::Str if strs.len() <= FEW => Test::Str(StrTest::InFew(strs.into_iter().collect())),
        Kind::Str => Test::Str(StrTest::In(strs)),
        Kind::Int => Test::IntIn(ints),
        Kind::Ip => Test::Ip(nets),
        Kind::Bool => {
            error(errors, &items_span(items), "`in` does not apply to bool fields".into());
            return None;
        }
    })
}

fn items_span(items: &[Item]) -> Span {
    let span = |item: &Item| match item {
        Item::Literal(_, s) | Item::List(_, s) => s.clone(),
    };
    match (items.first(), items.last()) {
        (Some(first), Some(last)) => span(first).start..span(last).end,
        _ => 0..0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::syntax::parse;

    fn check(text: &str) -> Result<Compiled, Vec<CompileError>> {
        let lists = HashMap::from([
            ("shells".to_string(), vec![Literal::Str("bash".into())]),
            ("ports".to_string(), vec![Literal::Int(22)]),
        ]);
        let macros = HashMap::from([("broken".to_string(), None)]);
        compile(&parse(text).unwrap(), &Scope { lists: &lists, macros: &macros })
    }

    fn messages(text: &str) -> Vec<(String, Span)> {
        match check(text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| (e.message, e.span)).collect(),
        }
    }

    #[test]
    fn well_typed_conditions_compile() {
        for text in [
            r#"proc.exe_name in (shells) and sock.rport != 22"#,
            r#"sock.raddr cidr "10.0.0.0/8" or sock.raddr in ("::1", "127.0.0.0/8")"#,
            r#"proc.exe glob "/usr/*/python3*" and proc.cmdline regex "^-?bash""#,
            r#"proc.exe_deleted or not proc.exe_trusted and stdio.fds = 0"#,
            r#"sock.rport in ports and proc.args contains "-e" and sock.raddr exists"#,
        ] {
            assert!(check(text).is_ok(), "{text}: {:?}", messages(text));
        }
    }

    #[test]
    fn every_error_is_reported_with_its_span() {
        let errors =
            messages(r#"proc.nmae = "x" and proc.pid = "1" or nosuch and sock.rport in nolist"#);
        let texts: Vec<&str> = errors.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(errors.len(), 4, "{texts:?}");
        assert!(texts[0].starts_with("unknown field `proc.nmae` (did you mean `proc.name`?)"));
        assert_eq!(errors[0].1, 0..9);
        assert!(texts[1].contains("is an integer, but this is a string"));
        assert_eq!(errors[1].1, 31..34);
        assert_eq!(texts[2], "undefined macro `nosuch`");
        assert_eq!(texts[3], "undefined list `nolist`");
    }

    #[test]
    fn bad_patterns_addresses_and_operators_are_errors() {
        let cases = [
            (r#"proc.exe regex "a(""#, "bad regex"),
            (r#"proc.exe glob "a[""#, "bad glob pattern"),
            (r#"sock.raddr cidr "10.0.0.0/33""#, "is not an address or CIDR network"),
            (r#"sock.raddr = "10.0.0.0/8""#, "is a network: use `cidr` or `in`"),
            (r#"proc.exe < "a""#, "`<` does not apply to `proc.exe` (string)"),
            (r#"proc.name in (ports)"#, "but the set holds an integer"),
            ("proc.pid", "is an integer field, not a condition"),
            ("broken", "macro `broken` has errors"),
        ];
        for (text, expected) in cases {
            let errors = messages(text);
            assert!(errors.iter().any(|(m, _)| m.contains(expected)), "{text}: {errors:?}");
        }
    }
}
