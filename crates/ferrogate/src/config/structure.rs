//! Structural problems (serde's: unknown keys, unknown enum values, wrong types, missing
//! fields), every one at once: extract, and on an error note it, remove the offending key from
//! the merged value and extract again. Messages name the key path as the file writes it (no
//! figment profile prefix) and suggest the nearest known name for a near miss.

use figment::error::{Actual, Kind};
use figment::providers::Serialized;
use figment::value::{Dict, Value};
use figment::{Figment, Profile};
use serde::de::DeserializeOwned;

/// Tables whose entries are user-named (`[backends.NAME]`): a broken entry is removed whole.
const NAMED_TABLES: &[&str] = &["backends", "deployments", "prices"];
/// Enough for any real file; a bound so a value that cannot be repaired cannot loop.
const MAX_PROBLEMS: usize = 50;

/// One structural problem: the key path (`backends.ol.kind`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// What extraction found: the value (once the offending keys are removed, so later checks can
/// still run on the rest), the problems, and the named entries removed to get past them (later
/// checks should not also report their absence).
#[derive(Debug)]
pub struct Extracted<T> {
    pub value: Option<T>,
    pub problems: Vec<Problem>,
    pub removed: Vec<String>,
}

/// Extracts `T` from `fig`, collecting every structural problem.
pub fn extract<T: DeserializeOwned>(fig: &Figment) -> Extracted<T> {
    let mut out = Extracted { value: None, problems: Vec::new(), removed: Vec::new() };
    let mut merged = match fig.extract::<Dict>() {
        Ok(d) => d,
        Err(e) => {
            out.problems.extend(e.into_iter().map(|e| Problem { path: path_of(&e.path), message: e.kind.to_string() }));
            return out;
        }
    };
    while out.problems.len() < MAX_PROBLEMS {
        let errors = match Figment::from(Serialized::from(&merged, Profile::Default)).extract::<T>() {
            Ok(v) => {
                out.value = Some(v);
                return out;
            }
            Err(e) => e,
        };
        let Some(e) = errors.into_iter().next() else { return out };
        out.problems.push(Problem { path: path_of(&key_path(&e)), message: describe(&e.kind) });
        if !repair(&mut merged, &e, &mut out.removed) {
            return out;
        }
    }
    out
}

/// The path of the key the error is about; an unknown field's own name is appended.
fn key_path(e: &figment::Error) -> Vec<String> {
    let mut path = e.path.clone();
    if let Kind::UnknownField(field, _) = &e.kind
        && path.last() != Some(field)
    {
        path.push(field.clone());
    }
    path
}

/// What to remove so extraction can go on: the key itself, or the whole named entry when the
/// entry cannot stand without it (a missing field, an unknown `kind`).
fn removal_target(e: &figment::Error) -> Vec<String> {
    let path = key_path(e);
    let whole_entry = matches!(e.kind, Kind::MissingField(_) | Kind::UnknownVariant(..));
    if whole_entry && path.len() >= 2 && NAMED_TABLES.contains(&path[0].as_str()) {
        return path[..2].to_vec();
    }
    path
}

/// Changes the merged value so extraction gets past `e`: an unknown enum value outside a named
/// entry becomes the first known one (removing it could make a required key missing, a problem
/// the file does not have); otherwise the key, or its named entry, is removed. False when
/// nothing could be changed (extraction stops there).
fn repair(merged: &mut Dict, e: &figment::Error, removed: &mut Vec<String>) -> bool {
    let target = removal_target(e);
    if let Kind::UnknownVariant(_, known) = &e.kind
        && let Some(first) = known.first()
        && target == e.path
    {
        return at_parent(merged, &target, &mut |parent, key| {
            parent.get_mut(key).map(|v| *v = Value::from(first.to_string())).is_some()
        });
    }
    if target.len() == 2 && NAMED_TABLES.contains(&target[0].as_str()) {
        removed.push(target.join("."));
    }
    at_parent(merged, &target, &mut |parent, key| parent.remove(key).is_some())
}

/// Calls `f` with the table holding the last key of `path` and that key, through tables and
/// arrays of tables (`limits.rules.0.scope`).
fn at_parent(dict: &mut Dict, path: &[String], f: &mut dyn FnMut(&mut Dict, &str) -> bool) -> bool {
    match path {
        [] => false,
        [key] => f(dict, key),
        [key, rest @ ..] => dict.get_mut(key).is_some_and(|v| at_parent_in(v, rest, f)),
    }
}

fn at_parent_in(value: &mut Value, path: &[String], f: &mut dyn FnMut(&mut Dict, &str) -> bool) -> bool {
    match value {
        Value::Dict(_, inner) => at_parent(inner, path, f),
        Value::Array(_, items) => match path.split_first() {
            Some((index, rest)) if !rest.is_empty() => {
                index.parse::<usize>().ok().and_then(|i| items.get_mut(i)).is_some_and(|v| at_parent_in(v, rest, f))
            }
            _ => false,
        },
        _ => false,
    }
}

fn path_of(path: &[String]) -> String {
    if path.is_empty() { "the file".to_owned() } else { path.join(".") }
}

/// The problem in plain words.
fn describe(kind: &Kind) -> String {
    match kind {
        Kind::UnknownField(found, known) => {
            format!("unknown key '{found}'{} (known: {})", did_you_mean(found, known), known.join(", "))
        }
        Kind::UnknownVariant(found, known) => {
            format!("'{found}' is not one of {}{}", known.join(", "), did_you_mean(found, known))
        }
        Kind::InvalidType(actual, expected) => {
            format!("must be {}, not {}", expected_words(expected), actual_words(actual))
        }
        Kind::InvalidValue(actual, expected) => {
            format!("must be {}, not {}", expected_words(expected), actual_words(actual))
        }
        Kind::MissingField(field) => format!("the required key '{field}' is missing"),
        Kind::InvalidLength(n, expected) => format!("has {n} entries; expected {expected}"),
        other => other.to_string(),
    }
}

fn expected_words(expected: &str) -> String {
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" | "a character" | "path string" => "a string",
        "a sequence" => "a list [ … ]",
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table",
        e => return e.to_owned(),
    };
    words.to_owned()
}

fn actual_words(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("the string \"{s}\""),
        Actual::Signed(n) => n.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Float(f) => f.to_string(),
        Actual::Bool(b) => b.to_string(),
        Actual::Seq => "a list".to_owned(),
        Actual::Map => "a table".to_owned(),
        other => other.to_string(),
    }
}

/// `; did you mean 'ollama'?` when one known name is close to what was written.
pub fn did_you_mean(found: &str, known: &[&str]) -> String {
    nearest(found, known).map(|n| format!("; did you mean '{n}'?")).unwrap_or_default()
}

/// The known name closest to `found`, if it is close enough to be a typo (edit distance at most
/// a third of its length, at least 1).
pub fn nearest<'a>(found: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (found.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(&found.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        assert_eq!(nearest("olama", &["openai", "ollama", "embedded"]), Some("ollama"));
        assert_eq!(nearest("listn", &["listen", "api_keys"]), Some("listen"));
        assert_eq!(nearest("zzz", &["openai", "ollama"]), None);
    }
}
