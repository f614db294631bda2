//! Rule files and their assembly into a compiled rule set (DESIGN §5).
//!
//! Files are read in order (directories in the order given, files in each by name). `[[list]]`s
//! may be extended by later files with `append = true`; a later `[[macro]]` or `[[rule]]` with a
//! name or id already defined replaces it only with `override = true` (an override of a rule may
//! give only the keys it changes, e.g. `enabled = false`). Anything else defined twice is an
//! error. Every error of every file is collected before the set is refused; nothing is half
//! loaded.

use super::compile::{CompileError, Compiled, ListItems, Predicate, Scope, compile, memoized};
use super::error::{Lines, RuleError, RuleErrors};
use super::syntax::{self, Expr, Literal, Span};
use super::template::Template;
use crate::model::Severity;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The built-in pack, compiled in: read first, before any local rule file (unless `[rules]
/// builtin = false`).
pub const EMBEDDED_PACK: &[(&str, &str)] =
    &[("reverse_shell.toml", include_str!("../../rules/reverse_shell.toml"))];

/// One rule file's name and text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSource {
    /// Path, or `<embedded>/NAME`.
    pub name: String,
    /// Contents.
    pub text: String,
}

impl RuleSource {
    /// The built-in pack.
    pub fn embedded() -> Vec<RuleSource> {
        EMBEDDED_PACK
            .iter()
            .map(|(name, text)| RuleSource {
                name: format!("<embedded>/{name}"),
                text: text.to_string(),
            })
            .collect()
    }

    /// Reads rule files: each path is a file, or a directory whose `*.toml` files are read in
    /// name order. A path that does not exist is an error (a typo must not disable detection).
    pub fn read(paths: &[PathBuf]) -> Result<Vec<RuleSource>, RuleErrors> {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        let fail = |path: &Path, message: String| RuleError {
            file: path.display().to_string(),
            line: 1,
            column: 1,
            context: None,
            message,
        };
        for path in paths {
            let files = if path.is_dir() {
                match std::fs::read_dir(path) {
                    Ok(entries) => {
                        let mut files: Vec<PathBuf> = entries
                            .filter_map(Result::ok)
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
                            .collect();
                        files.sort();
                        files
                    }
                    Err(e) => {
                        errors.push(fail(path, format!("reading the directory: {e}")));
                        continue;
                    }
                }
            } else {
                vec![path.clone()]
            };
            for file in files {
                match std::fs::read_to_string(&file) {
                    Ok(text) => sources.push(RuleSource { name: file.display().to_string(), text }),
                    Err(e) => errors.push(fail(&file, format!("reading the file: {e}"))),
                }
            }
        }
        if errors.is_empty() { Ok(sources) } else { Err(RuleErrors(errors)) }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    list: Vec<ListDef>,
    #[serde(default, rename = "macro")]
    macros: Vec<MacroDef>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDef {
    name: Spanned<String>,
    items: Vec<ListValue>,
    #[serde(default)]
    append: bool,
    #[serde(default, rename = "override")]
    replace: bool,
}

#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum ListValue {
    Str(String),
    Int(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MacroDef {
    name: Spanned<String>,
    condition: Spanned<String>,
    #[serde(default, rename = "override")]
    replace: bool,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: Spanned<String>,
    version: Option<u32>,
    name: Option<String>,
    description: Option<String>,
    severity: Option<Severity>,
    condition: Option<Spanned<String>>,
    #[serde(default)]
    tags: Option<Vec<Spanned<String>>>,
    reference: Option<String>,
    enabled: Option<bool>,
    exceptions: Option<Vec<ExceptionDef>>,
    message: Option<Spanned<String>>,
    covers: Option<Covers>,
    #[serde(default, rename = "override")]
    replace: bool,
}

/// What a rule's matching subjects must cover, together, for the rule to match a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Covers {
    /// The process's stdin and its stdout or stderr, on one socket or several: `nc H P | sh |
    /// nc H P2` reads commands from one connection and answers on another.
    StdinAndOutput,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionDef {
    name: String,
    condition: Spanned<String>,
}

/// A compiled rule.
pub struct Rule {
    /// Stable kebab-case id.
    pub id: String,
    /// Version.
    pub version: u32,
    /// Short title.
    pub name: String,
    /// What it detects and why.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// Tags (`mitre.T1059.004`, `local.…`).
    pub tags: Vec<String>,
    /// Where a responder reads more: a URL or runbook text.
    pub reference: Option<String>,
    /// Disabled rules are compiled (so errors show) but never evaluated.
    pub enabled: bool,
    /// Condition with the exceptions folded in.
    pub predicate: Predicate,
    /// What the process alone must satisfy for the condition to hold (`shell` in most of the
    /// default pack), checked once per process rather than once per subject.
    pub process_gate: Option<Predicate>,
    /// Message template.
    pub message: Template,
    /// `None`: each subject matches on its own. Otherwise the process's subjects that satisfy
    /// the condition must together cover this, and then each of them is a match.
    pub covers: Option<Covers>,
    /// Where it was (last) defined, `file:line`.
    pub defined_at: String,
}

/// Which rule files make a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The built-in pack first (the default); `false` replaces it with `paths` alone.
    pub builtin: bool,
    /// Local rule files or directories, read in order after the pack.
    pub paths: Vec<PathBuf>,
    /// A set with no enabled rule is accepted (detection off on purpose).
    pub allow_none: bool,
}

impl Default for Selection {
    fn default() -> Self {
        Selection { builtin: true, paths: Vec::new(), allow_none: false }
    }
}

impl Selection {
    /// Where the rules come from, for events and listings.
    pub fn describe(&self) -> Vec<String> {
        let pack = self.builtin.then(|| "<embedded>".to_string());
        pack.into_iter().chain(self.paths.iter().map(|p| p.display().to_string())).collect()
    }
}

/// A compiled rule set and the files it came from.
pub struct RuleSet {
    /// Every rule, in definition order.
    pub rules: Vec<Rule>,
    /// The files, kept so that the last good set can be saved.
    pub sources: Vec<RuleSource>,
}

/// Where something was written: its file and span.
#[derive(Clone)]
struct Origin {
    file: usize,
    span: Span,
}

/// Collects located errors.
struct Errors<'a> {
    sources: &'a [RuleSource],
    /// Each source's line index, made at its first error.
    lines: Vec<std::cell::OnceCell<Lines>>,
    found: Vec<RuleError>,
}

impl Errors<'_> {
    fn line_column(&self, origin: &Origin) -> (usize, usize) {
        let text = &self.sources[origin.file].text;
        self.lines[origin.file].get_or_init(|| Lines::new(text)).locate(text, origin.span.start)
    }

    fn at(&mut self, origin: &Origin, context: Option<String>, message: String) {
        let (line, column) = self.line_column(origin);
        let file = self.sources[origin.file].name.clone();
        self.found.push(RuleError { file, line, column, context, message });
    }

    fn located(&self, origin: &Origin) -> String {
        format!("{}:{}", self.sources[origin.file].name, self.line_column(origin).0)
    }

    /// Errors inside a condition string, mapped back into the file.
    fn in_condition(
        &mut self,
        condition: &Spanned<String>,
        file: usize,
        context: &str,
        errors: Vec<CompileError>,
    ) {
        let map = ConditionMap::new(&self.sources[file].text, condition);
        for error in errors {
            let origin = Origin { file, span: map.to_file(error.span) };
            self.at(&origin, Some(context.to_string()), error.message);
        }
    }
}

/// Maps spans inside a condition's value to file offsets. Exact for literal strings ('…' and
/// '''…''', which is what conditions are written in) and for basic strings without escapes; for
/// a basic string with escapes, errors point at the start of the string.
struct ConditionMap {
    content_start: Option<usize>,
    value_start: usize,
}

impl ConditionMap {
    fn new(file: &str, value: &Spanned<String>) -> Self {
        let span = value.span();
        let raw = file.get(span.clone()).unwrap_or("");
        let mut start = span.start;
        let delimiter = ["'''", "\"\"\"", "'", "\""].into_iter().find(|d| raw.starts_with(d));
        let content_start = delimiter.and_then(|d| {
            start += d.len();
            if d.len() == 3 {
                // TOML drops a newline right after an opening triple quote.
                let rest = &file[start..];
                if rest.starts_with("\r\n") {
                    start += 2;
                } else if rest.starts_with('\n') {
                    start += 1;
                }
            }
            let exact =
                file.get(start..start + value.get_ref().len()) == Some(value.get_ref().as_str());
            exact.then_some(start)
        });
        ConditionMap { content_start, value_start: span.start }
    }

    fn to_file(&self, span: Span) -> Span {
        match self.content_start {
            Some(start) => start + span.start..start + span.end,
            None => self.value_start..self.value_start,
        }
    }
}

fn is_kebab_case(id: &str) -> bool {
    !id.is_empty()
        && id.split('-').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The references a condition makes to macros (bare names that are not fields).
fn referenced_names(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::And(operands) | Expr::Or(operands) => {
            operands.iter().for_each(|e| referenced_names(e, out));
        }
        Expr::Not(a) => referenced_names(a, out),
        Expr::Name(name, _) => out.push(name.clone()),
        _ => {}
    }
}

struct MacroEntry {
    def: MacroDef,
    file: usize,
    parsed: Option<Expr>,
}

struct RuleEntry {
    def: RuleDef,
    file: usize,
}

/// Errors listed by one compile; the rest are counted.
const MAX_REPORTED_ERRORS: usize = 100;

impl RuleSet {
    /// Compiles rule files into a set, or returns every error found.
    pub fn compile(sources: Vec<RuleSource>) -> Result<RuleSet, RuleErrors> {
        let lines = sources.iter().map(|_| std::cell::OnceCell::new()).collect();
        let mut errors = Errors { sources: &sources, lines, found: Vec::new() };
        let mut parsed = Vec::new();
        for (file, source) in sources.iter().enumerate() {
            match toml::from_str::<RuleFile>(&source.text) {
                Ok(contents) => parsed.push((file, contents)),
                Err(e) => {
                    let span = e.span().unwrap_or(0..0);
                    errors.at(&Origin { file, span }, None, e.message().trim().to_string());
                }
            }
        }
        let lists = merge_lists(&mut parsed, &mut errors);
        let macros = compile_macros(&mut parsed, &lists, &mut errors);
        let rules = compile_rules(parsed, &lists, &macros, &mut errors);
        let mut found = errors.found;
        // Report in reading order: file by file, top to bottom.
        let position = |e: &RuleError| {
            let file = sources.iter().position(|s| s.name == e.file).unwrap_or(usize::MAX);
            (file, e.line, e.column)
        };
        found.sort_by_key(position);
        if found.len() > MAX_REPORTED_ERRORS {
            // One mistake can cascade through thousands of generated rules: the first errors say
            // what is wrong, the rest would bury them (and a reload_failed event) in noise.
            let more = found.len() - MAX_REPORTED_ERRORS;
            found.truncate(MAX_REPORTED_ERRORS + 1);
            let last = found.last_mut().expect("more errors than the cap");
            (last.context, last.message) = (None, format!("and {more} more errors from here on"));
        }
        if found.is_empty() { Ok(RuleSet { rules, sources }) } else { Err(RuleErrors(found)) }
    }

    /// Reads and compiles the selected rule files: the built-in pack, then the local files
    /// (files, or directories of `*.toml`) that extend and override it. A set with no enabled
    /// rule is an error unless the selection allows it: detection must not be off by accident.
    pub fn load(selection: &Selection) -> Result<RuleSet, RuleErrors> {
        let mut sources = if selection.builtin { RuleSource::embedded() } else { Vec::new() };
        sources.extend(RuleSource::read(&selection.paths)?);
        let set = RuleSet::compile(sources)?;
        if set.enabled().next().is_none() && !selection.allow_none {
            let file = set.sources.last().map_or("<rules>".into(), |s| s.name.clone());
            return Err(RuleErrors(vec![RuleError {
                file,
                line: 1,
                column: 1,
                context: None,
                message: format!(
                    "no enabled rule in {} files: detection would be off; set `allow_none = \
                     true` under [rules] to run without rules on purpose",
                    set.sources.len()
                ),
            }]));
        }
        Ok(set)
    }

    /// The enabled rules.
    pub fn enabled(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.enabled)
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }
}

fn merge_lists(
    parsed: &mut [(usize, RuleFile)],
    errors: &mut Errors<'_>,
) -> HashMap<String, ListItems> {
    let mut lists: HashMap<String, (ListItems, Origin)> = HashMap::new();
    for (file, contents) in parsed.iter_mut() {
        for list in std::mem::take(&mut contents.list) {
            let origin = Origin { file: *file, span: list.name.span() };
            let name = list.name.into_inner();
            let context = Some(format!("list `{name}`"));
            let items: ListItems = list
                .items
                .into_iter()
                .map(|v| match v {
                    ListValue::Str(s) => Literal::Str(s),
                    ListValue::Int(n) => Literal::Int(n),
                })
                .collect();
            if list.append && list.replace {
                errors.at(&origin, context, "`append` and `override` exclude each other".into());
                continue;
            }
            match lists.get_mut(&name) {
                Some((existing, _)) if list.append => existing.extend(items),
                Some((existing, _)) if list.replace => *existing = items,
                Some((_, first)) => {
                    let message = format!(
                        "already defined at {}; set `append = true` to extend it or `override = \
                         true` to replace it",
                        errors.located(first)
                    );
                    errors.at(&origin, context, message);
                }
                None if list.append || list.replace => {
                    let key = if list.append { "append" } else { "override" };
                    errors.at(
                        &origin,
                        context,
                        format!("`{key} = true`, but no earlier file defines this list"),
                    );
                }
                None => {
                    lists.insert(name, (items, origin));
                }
            }
        }
    }
    lists.into_iter().map(|(name, (items, _))| (name, items)).collect()
}

fn compile_macros(
    parsed: &mut [(usize, RuleFile)],
    lists: &HashMap<String, ListItems>,
    errors: &mut Errors<'_>,
) -> HashMap<String, Option<Compiled>> {
    let mut entries: HashMap<String, MacroEntry> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (file, contents) in parsed.iter_mut() {
        for def in std::mem::take(&mut contents.macros) {
            let origin = Origin { file: *file, span: def.name.span() };
            let name = def.name.get_ref().clone();
            let context = Some(format!("macro `{name}`"));
            if crate::rules::fields::field(&name).is_some() || name.contains('.') {
                errors.at(&origin, context, "a macro name cannot contain `.` (fields do)".into());
                continue;
            }
            match entries.get(&name) {
                Some(_) if def.replace => {}
                Some(first) => {
                    let first = Origin { file: first.file, span: first.def.name.span() };
                    let message = format!(
                        "already defined at {}; set `override = true` to replace it",
                        errors.located(&first)
                    );
                    errors.at(&origin, context, message);
                    continue;
                }
                None if def.replace => {
                    errors.at(
                        &origin,
                        context,
                        "`override = true`, but no earlier file defines this macro".into(),
                    );
                    continue;
                }
                None => order.push(name.clone()),
            }
            let parsed = match syntax::parse(def.condition.get_ref()) {
                Ok(expr) => Some(expr),
                Err(e) => {
                    let message = vec![CompileError { message: e.message, span: e.span }];
                    errors.in_condition(&def.condition, *file, &format!("macro `{name}`"), message);
                    None
                }
            };
            entries.insert(name, MacroEntry { def, file: *file, parsed });
        }
    }
    // Macros may use macros defined anywhere: compile in dependency order, refusing cycles.
    let slots = order.iter().enumerate().map(|(slot, name)| (name.as_str(), slot)).collect();
    let macros = Macros { entries: &entries, slots, lists };
    let mut state = Compiling::default();
    for name in &order {
        macros.compile(name, &mut state, errors);
    }
    state.compiled
}

/// How long a chain of macros using macros may be. Each level is a nested call when compiling
/// and when evaluating: like `MAX_NESTING` inside one condition, a bound that keeps a hostile or
/// generated rule file from overflowing the stack, far above what hand-written rules chain.
const MAX_MACRO_DEPTH: usize = 16;

/// Every macro definition, for compiling them in dependency order.
struct Macros<'a> {
    entries: &'a HashMap<String, MacroEntry>,
    /// A macro's memo slot: its place in definition order.
    slots: HashMap<&'a str, usize>,
    lists: &'a HashMap<String, ListItems>,
}

#[derive(Default)]
struct Compiling {
    /// Compiled macros; `None` for one with errors.
    compiled: HashMap<String, Option<Compiled>>,
    /// The chain being compiled.
    visiting: HashSet<String>,
    /// The longest chain of macros under each compiled one, itself included.
    depths: HashMap<String, usize>,
}

impl Macros<'_> {
    fn compile(&self, name: &str, state: &mut Compiling, errors: &mut Errors<'_>) {
        let (entries, lists) = (self.entries, self.lists);
        if state.compiled.contains_key(name) {
            return;
        }
        let entry = &entries[name];
        let context = format!("macro `{name}`");
        let Some(expr) = &entry.parsed else {
            state.depths.insert(name.to_string(), 1);
            state.compiled.insert(name.to_string(), None);
            return;
        };
        let refuse = |state: &mut Compiling, errors: &mut Errors<'_>, message, depth| {
            let origin = Origin { file: entry.file, span: entry.def.name.span() };
            errors.at(&origin, Some(context.clone()), message);
            state.visiting.remove(name);
            state.depths.insert(name.to_string(), depth);
            state.compiled.insert(name.to_string(), None);
        };
        state.visiting.insert(name.to_string());
        let mut references = Vec::new();
        referenced_names(expr, &mut references);
        let mut depth = 1;
        for reference in references.iter().filter(|r| entries.contains_key(*r)) {
            if state.visiting.contains(reference) {
                let message = format!("refers to itself through `{reference}`");
                return refuse(state, errors, message, 1);
            }
            if state.visiting.len() < MAX_MACRO_DEPTH {
                self.compile(reference, state, errors);
            }
            let below = state.depths.get(reference).copied().unwrap_or(MAX_MACRO_DEPTH);
            if below >= MAX_MACRO_DEPTH {
                let message = format!(
                    "macros using macros more than {MAX_MACRO_DEPTH} deep (through `{reference}`)"
                );
                return refuse(state, errors, message, MAX_MACRO_DEPTH);
            }
            depth = depth.max(below + 1);
        }
        state.visiting.remove(name);
        let result = compile(expr, &Scope { lists, macros: &state.compiled });
        let predicate = match result {
            // Remembered per subject, or per process when only the process decides: `shell` is
            // in most rules of the default pack, and a process can have dozens of subjects.
            Ok(p) => {
                let slot = self.slots.get(name).copied().unwrap_or(usize::MAX);
                Some(memoized(slot, p))
            }
            Err(found) => {
                errors.in_condition(&entry.def.condition, entry.file, &context, found);
                None
            }
        };
        state.depths.insert(name.to_string(), depth);
        state.compiled.insert(name.to_string(), predicate);
    }
}

fn compile_rules(
    parsed: Vec<(usize, RuleFile)>,
    lists: &HashMap<String, ListItems>,
    macros: &HashMap<String, Option<Compiled>>,
    errors: &mut Errors<'_>,
) -> Vec<Rule> {
    let mut merged: Vec<RuleEntry> = Vec::new();
    for (file, contents) in parsed {
        for def in contents.rules {
            let origin = Origin { file, span: def.id.span() };
            let id = def.id.get_ref().clone();
            let context = Some(format!("rule `{id}`"));
            if !is_kebab_case(&id) {
                errors.at(
                    &origin,
                    context.clone(),
                    "ids are kebab-case: lowercase letters, digits and `-`".into(),
                );
            }
            match merged.iter_mut().find(|e| e.def.id.get_ref() == &id) {
                Some(entry) if def.replace => {
                    *entry = RuleEntry { def: inherit(def, &entry.def), file };
                }
                Some(entry) => {
                    let first = Origin { file: entry.file, span: entry.def.id.span() };
                    let message = format!(
                        "duplicate rule id, first defined at {}; set `override = true` to replace it",
                        errors.located(&first)
                    );
                    errors.at(&origin, context, message);
                }
                None if def.replace => {
                    errors.at(
                        &origin,
                        context,
                        "`override = true`, but no earlier file defines this rule".into(),
                    );
                }
                None => merged.push(RuleEntry { def, file }),
            }
        }
    }
    merged.into_iter().filter_map(|entry| compile_rule(entry, lists, macros, errors)).collect()
}

/// An override takes every key it leaves out from the rule it replaces.
fn inherit(mut def: RuleDef, base: &RuleDef) -> RuleDef {
    def.version = def.version.or(base.version);
    def.name = def.name.or_else(|| base.name.clone());
    def.description = def.description.or_else(|| base.description.clone());
    def.severity = def.severity.or(base.severity);
    def.condition = def.condition.or_else(|| base.condition.clone());
    def.tags = def.tags.or_else(|| base.tags.clone());
    def.reference = def.reference.or_else(|| base.reference.clone());
    def.enabled = def.enabled.or(base.enabled);
    def.exceptions = def.exceptions.or_else(|| base.exceptions.clone());
    def.message = def.message.or_else(|| base.message.clone());
    def.covers = def.covers.or(base.covers);
    def
}

fn compile_rule(
    entry: RuleEntry,
    lists: &HashMap<String, ListItems>,
    macros: &HashMap<String, Option<Compiled>>,
    errors: &mut Errors<'_>,
) -> Option<Rule> {
    let RuleEntry { def, file } = entry;
    let id = def.id.get_ref().clone();
    let context = format!("rule `{id}`");
    let origin = Origin { file, span: def.id.span() };
    let before = errors.found.len();
    let mut missing = Vec::new();
    if def.name.is_none() {
        missing.push("name");
    }
    if def.severity.is_none() {
        missing.push("severity");
    }
    if def.condition.is_none() {
        missing.push("condition");
    }
    if def.message.is_none() {
        missing.push("message");
    }
    if !missing.is_empty() {
        errors.at(&origin, Some(context.clone()), format!("missing {}", missing.join(", ")));
    }
    for tag in def.tags.iter().flatten() {
        if let Err(why) = crate::model::mitre::check_tag(tag.get_ref()) {
            errors.at(&Origin { file, span: tag.span() }, Some(context.clone()), why);
        }
    }
    let scope = Scope { lists, macros };
    let mut condition = |text: &Spanned<String>, context: &str| -> Option<Compiled> {
        let expr = match syntax::parse(text.get_ref()) {
            Ok(expr) => expr,
            Err(e) => {
                let found = vec![CompileError { message: e.message, span: e.span }];
                errors.in_condition(text, file, context, found);
                return None;
            }
        };
        match compile(&expr, &scope) {
            Ok(compiled) => Some(compiled),
            Err(found) => {
                errors.in_condition(text, file, context, found);
                None
            }
        }
    };
    let predicate = def.condition.as_ref().and_then(|c| condition(c, &context));
    let mut exceptions = Vec::new();
    for exception in def.exceptions.iter().flatten() {
        let context = format!("{context}, exception `{}`", exception.name);
        exceptions.extend(condition(&exception.condition, &context).map(|c| c.predicate));
    }
    let message = def.message.as_ref().and_then(|m| match Template::parse(m.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.in_condition(m, file, &context, vec![e]);
            None
        }
    });
    if errors.found.len() > before {
        return None;
    }
    let (Compiled { predicate, gate: process_gate, .. }, message) = (predicate?, message?);
    let predicate: Predicate = if exceptions.is_empty() {
        predicate
    } else {
        std::sync::Arc::new(move |s, cx| predicate(s, cx) && !exceptions.iter().any(|e| e(s, cx)))
    };
    Some(Rule {
        id,
        version: def.version.unwrap_or(1),
        name: def.name.unwrap_or_default(),
        description: def.description.unwrap_or_default(),
        severity: def.severity.unwrap_or(Severity::Medium),
        tags: def.tags.unwrap_or_default().into_iter().map(Spanned::into_inner).collect(),
        reference: def.reference,
        enabled: def.enabled.unwrap_or(true),
        predicate,
        process_gate,
        message,
        covers: def.covers,
        defined_at: errors.located(&origin),
    })
}
