//! JSON Schema → GBNF (llama.cpp's grammar format), for the subset structured output needs:
//! `type` (object, array, string, number, integer, boolean, null, or a list of them),
//! `properties` + `required` (properties in declared order, required ones first),
//! `additionalProperties` (false, or a schema for an object without `properties`), `items`,
//! `minItems`/`maxItems`, `minLength`/`maxLength`, `enum`, `const`, `anyOf`/`oneOf`, and local
//! `$ref`s into `$defs`/`definitions`. Annotations (`description`, `title`, `default`, …) are
//! ignored. Any other keyword is refused with its path: a schema the grammar cannot enforce
//! must not be answered with output that silently ignores part of it.
//!
//! Pure: no llama.cpp, no I/O. The grammar is whitespace-tolerant but bounded (no endless
//! runs of spaces or digits a small model could loop in).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Keywords that only describe a schema; they do not constrain output.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "strict",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords this converter enforces.
const ENFORCED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "$ref",
    "$defs",
    "definitions",
];

/// Repetition bounds above this are refused: each bound expands into grammar rules.
const MAX_BOUND: u64 = 64;

/// The shared primitive rules every generated grammar ends with.
pub(crate) const PRIMITIVES: &str = r#"ws ::= | " " | "\n" [ \t]{0,20}
string ::= "\"" char* "\""
char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
number ::= integer ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?
integer ::= "-"? ([0-9] | [1-9] [0-9]{0,15})
boolean ::= "true" | "false"
null ::= "null"
value ::= object | array | string | number | boolean | null
object ::= "{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws )* )? "}"
array ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
"#;

/// An unsupported or malformed schema: `path` is a JSON pointer into the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} (at {})", self.message, self.path)
        }
    }
}

/// Builds GBNF rules for schemas; `rule` returns the name of the rule that matches one schema.
pub(crate) struct Converter<'a> {
    /// The document `$ref`s resolve against.
    root: &'a Value,
    rules: BTreeMap<String, String>,
    /// `$ref` target → rule name (also breaks recursion).
    refs: BTreeMap<String, String>,
    next: usize,
}

impl<'a> Converter<'a> {
    pub(crate) fn new(root: &'a Value) -> Self {
        Self { root, rules: BTreeMap::new(), refs: BTreeMap::new(), next: 0 }
    }

    /// Resolves later `$ref`s against `root` (each tool's parameters are their own document).
    pub(crate) fn set_root(&mut self, root: &'a Value) {
        self.root = root;
        self.refs.clear();
    }

    /// The rule matching `schema` (found at `path`).
    pub(crate) fn rule(&mut self, schema: &Value, path: &str) -> Result<String, SchemaError> {
        let body = self.body(schema, path)?;
        Ok(self.add(body))
    }

    /// Every generated rule plus the primitives, after a `root ::= …` line the caller writes.
    pub(crate) fn finish(self) -> String {
        let mut out = String::new();
        for (name, body) in &self.rules {
            let _ = writeln!(out, "{name} ::= {body}");
        }
        out.push_str(PRIMITIVES);
        out
    }

    fn add(&mut self, body: String) -> String {
        self.next += 1;
        let name = format!("r{}", self.next);
        self.rules.insert(name.clone(), body);
        name
    }

    fn body(&mut self, schema: &Value, path: &str) -> Result<String, SchemaError> {
        let obj = match schema {
            Value::Bool(true) => return Ok("value".into()),
            Value::Object(o) => o,
            _ => return Err(err(path, "a schema must be an object (or `true`)")),
        };
        check_keywords(obj, path)?;
        if let Some(r) = obj.get("$ref") {
            return self.reference(r, path);
        }
        if let Some(c) = obj.get("const") {
            return Ok(literal(c));
        }
        if let Some(e) = obj.get("enum") {
            let Some(values) = e.as_array().filter(|v| !v.is_empty()) else {
                return Err(err(path, "`enum` must be a non-empty array"));
            };
            return Ok(values.iter().map(literal).collect::<Vec<_>>().join(" | "));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(alts) = obj.get(key) {
                return self.alternatives(alts, &format!("{path}/{key}"));
            }
        }
        match obj.get("type") {
            None if obj.contains_key("properties") => self.object(obj, path),
            None if obj.contains_key("items") => self.array(obj, path),
            None => Ok("value".into()),
            Some(Value::String(t)) => self.typed(t, obj, path),
            Some(Value::Array(types)) => {
                let mut alts = Vec::with_capacity(types.len());
                for t in types {
                    let t = t.as_str().ok_or_else(|| err(path, "`type` entries must be strings"))?;
                    let body = self.typed(t, obj, path)?;
                    alts.push(self.add(body));
                }
                if alts.is_empty() {
                    return Err(err(path, "`type` must not be an empty list"));
                }
                Ok(alts.join(" | "))
            }
            Some(_) => Err(err(path, "`type` must be a string or a list of strings")),
        }
    }

    fn typed(&mut self, t: &str, obj: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
        match t {
            "object" => self.object(obj, path),
            "array" => self.array(obj, path),
            "string" => string(obj, path),
            "number" => Ok("number".into()),
            "integer" => Ok("integer".into()),
            "boolean" => Ok("boolean".into()),
            "null" => Ok("null".into()),
            other => Err(err(path, &format!("unknown type '{other}'"))),
        }
    }

    fn alternatives(&mut self, alts: &Value, path: &str) -> Result<String, SchemaError> {
        let Some(alts) = alts.as_array().filter(|a| !a.is_empty()) else {
            return Err(err(path, "must be a non-empty array of schemas"));
        };
        let mut names = Vec::with_capacity(alts.len());
        for (i, s) in alts.iter().enumerate() {
            names.push(self.rule(s, &format!("{path}/{i}"))?);
        }
        Ok(names.join(" | "))
    }

    fn reference(&mut self, r: &Value, path: &str) -> Result<String, SchemaError> {
        let target = r.as_str().ok_or_else(|| err(path, "`$ref` must be a string"))?;
        if let Some(name) = self.refs.get(target) {
            return Ok(name.clone());
        }
        let pointer = target
            .strip_prefix('#')
            .filter(|p| p.starts_with("/$defs/") || p.starts_with("/definitions/"))
            .ok_or_else(|| err(path, "only local `$ref`s into #/$defs or #/definitions are supported"))?;
        let schema = self.root.pointer(pointer).ok_or_else(|| err(path, &format!("`$ref` {target} not found")))?;
        // Reserve the name first: a recursive schema refers to itself.
        self.next += 1;
        let name = format!("r{}", self.next);
        self.refs.insert(target.to_owned(), name.clone());
        let body = self.body(schema, pointer)?;
        self.rules.insert(name.clone(), body);
        Ok(name)
    }

    fn object(&mut self, obj: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
        let props = match obj.get("properties") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(err(path, "`properties` must be an object")),
        };
        let required: Vec<&str> = match obj.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|v| v.as_str().ok_or_else(|| err(path, "`required` must list strings")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(err(path, "`required` must be an array")),
        };
        let Some(props) = props.filter(|p| !p.is_empty()) else {
            return self.map(obj.get("additionalProperties"), path);
        };
        if matches!(obj.get("additionalProperties"), Some(v) if v != &Value::Bool(false)) {
            return Err(err(path, "`additionalProperties` beside `properties` is supported only as false"));
        }
        if let Some(missing) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(err(path, &format!("required property '{missing}' is not in `properties`")));
        }
        let mut req_kv = Vec::new();
        let mut opt_kv = Vec::new();
        for (key, schema) in props {
            let value = self.rule(schema, &format!("{path}/properties/{key}"))?;
            let kv = format!("{} ws \":\" ws {value}", literal(&Value::String(key.clone())));
            if required.contains(&key.as_str()) { req_kv.push(kv) } else { opt_kv.push(kv) }
        }
        Ok(format!("\"{{\" ws {} ws \"}}\"", self.members(&req_kv, &opt_kv)))
    }

    /// Required members in order, then each optional one (a comma before any but the first).
    fn members(&mut self, required: &[String], optional: &[String]) -> String {
        let tail = |from: usize| -> String {
            optional[from..].iter().map(|kv| format!("( ws \",\" ws {kv} )?")).collect::<Vec<_>>().join(" ")
        };
        if !required.is_empty() {
            let head = required.join(" ws \",\" ws ");
            return format!("{head} {}", tail(0));
        }
        let firsts: Vec<String> = (0..optional.len()).map(|i| format!("{} {}", optional[i], tail(i + 1))).collect();
        let name = self.add(firsts.join(" | "));
        format!("{name}?")
    }

    /// An object without `properties`: any members, their values of `additionalProperties`.
    fn map(&mut self, additional: Option<&Value>, path: &str) -> Result<String, SchemaError> {
        let value = match additional {
            None | Some(Value::Bool(true)) => "value".to_owned(),
            Some(Value::Bool(false)) => return Ok("\"{\" ws \"}\"".into()),
            Some(s) => self.rule(s, &format!("{path}/additionalProperties"))?,
        };
        let kv = format!("string ws \":\" ws {value}");
        Ok(format!("\"{{\" ws ( {kv} ( ws \",\" ws {kv} )* )? ws \"}}\""))
    }

    fn array(&mut self, obj: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
        let item = match obj.get("items") {
            None => "value".to_owned(),
            Some(s) => self.rule(s, &format!("{path}/items"))?,
        };
        let min = bound(obj, "minItems", path)?.unwrap_or(0);
        let max = bound(obj, "maxItems", path)?;
        if max.is_some_and(|m| m < min) {
            return Err(err(path, "maxItems is below minItems"));
        }
        let sep = format!("ws \",\" ws {item}");
        let body = match (min, max) {
            (_, Some(0)) => String::new(),
            (0, None) => format!("( {item} ( {sep} )* )?"),
            (0, Some(m)) => format!("( {item} ( {sep} ){{0,{}}} )?", m - 1),
            (n, None) => format!("{item} ( {sep} ){{{},}}", n - 1),
            (n, Some(m)) => format!("{item} ( {sep} ){{{},{}}}", n - 1, m - 1),
        };
        Ok(format!("\"[\" ws {body} ws \"]\""))
    }
}

fn string(obj: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
    let min = bound(obj, "minLength", path)?.unwrap_or(0);
    let max = bound(obj, "maxLength", path)?;
    if max.is_some_and(|m| m < min) {
        return Err(err(path, "maxLength is below minLength"));
    }
    Ok(match (min, max) {
        (0, None) => "string".to_owned(),
        (n, None) => format!("\"\\\"\" char{{{n},}} \"\\\"\""),
        (n, Some(m)) => format!("\"\\\"\" char{{{n},{m}}} \"\\\"\""),
    })
}

fn bound(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u64>, SchemaError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_BOUND => Ok(Some(n)),
            Some(_) => Err(err(path, &format!("`{key}` above {MAX_BOUND} is not supported"))),
            None => Err(err(path, &format!("`{key}` must be a non-negative integer"))),
        },
    }
}

fn check_keywords(obj: &Map<String, Value>, path: &str) -> Result<(), SchemaError> {
    match obj.keys().find(|k| !ENFORCED.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(err(path, &format!("JSON Schema keyword '{k}' is not supported by the embedded engine"))),
    }
}

/// A GBNF literal matching exactly `v` serialized as compact JSON.
pub(crate) fn literal(v: &Value) -> String {
    gbnf_string(&v.to_string())
}

/// `text` as a quoted GBNF string literal.
pub(crate) fn gbnf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn err(path: &str, message: &str) -> SchemaError {
    SchemaError { path: if path.is_empty() { "#".into() } else { format!("#{path}") }, message: message.to_owned() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn convert(schema: Value) -> Result<String, SchemaError> {
        let mut c = Converter::new(&schema);
        let root = c.rule(&schema, "")?;
        Ok(format!("root ::= {root}\n{}", c.finish()))
    }

    #[test]
    fn object_with_required_and_optional_members() {
        let g = convert(json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
            "required": ["name"]
        }))
        .unwrap();
        assert!(g.contains(r#""\"name\"" ws ":" ws"#), "{g}");
        assert!(g.contains(r#"( ws "," ws "\"age\"" ws ":" ws"#), "{g}");
        assert!(g.contains(r#""\"a\"" | "\"b\"""#), "{g}");
    }

    #[test]
    fn refuses_what_it_cannot_enforce_with_the_path() {
        let e = convert(json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}})).unwrap_err();
        assert_eq!(e.path, "#/properties/n");
        assert!(e.message.contains("minimum"));
        assert!(convert(json!({"type": "string", "pattern": "^a"})).is_err());
        assert!(convert(json!({"allOf": []})).is_err());
        assert!(convert(json!({"$ref": "http://example.com/s.json"})).is_err());
        assert!(convert(json!({"type": "array", "maxItems": 100000})).is_err());
        assert!(convert(json!({"type": "object", "properties": {"a": {}}, "required": ["b"]})).is_err());
        assert!(convert(json!("string")).is_err());
    }

    #[test]
    fn refs_and_recursion() {
        let g = convert(json!({
            "$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
            "$ref": "#/$defs/node"
        }))
        .unwrap();
        assert!(g.starts_with("root ::= r"), "{g}");
    }

    #[test]
    fn literals_escape_quotes_and_controls() {
        assert_eq!(gbnf_string("a\"b\\\n"), r#""a\"b\\\n""#);
        assert_eq!(literal(&json!("x")), r#""\"x\"""#);
        assert_eq!(literal(&json!(3)), r#""3""#);
    }

    #[test]
    fn bounded_arrays_and_strings() {
        let g = convert(
            json!({"type": "array", "items": {"type": "string", "maxLength": 5}, "minItems": 1, "maxItems": 3}),
        )
        .unwrap();
        assert!(g.contains("{0,2}"), "{g}");
        assert!(g.contains("char{0,5}"), "{g}");
    }
}
