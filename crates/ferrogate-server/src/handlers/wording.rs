//! serde's decoding messages in the API's words: `invalid value: integer \`-1\`, expected u32 at
//! line 1 column 77` for `max_tokens` becomes `max_tokens must be a non-negative integer (got
//! -1)`. Pure text in, text out; anything not recognised keeps serde's words without the position.

/// The client-facing sentence for a decoding error of the field at `param` (`None`: the body).
pub fn explain(param: Option<&str>, serde_message: &str) -> String {
    let msg = without_position(serde_message);
    let subject = param.unwrap_or("the request body");
    if let Some(field) = between(msg, "missing field `", "`") {
        return format!("{} is required", joined(param, field));
    }
    if let Some(field) = between(msg, "unknown field `", "`") {
        return format!("{} is not a known field", joined(param, field));
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        return unknown_variant(subject, rest);
    }
    for prefix in ["invalid value: ", "invalid type: ", "invalid length "] {
        if let Some(rest) = msg.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            return format!("{subject} must be {}; got {}", expected_words(expected), found_words(found));
        }
    }
    format!("Invalid value for '{subject}': {msg}")
}

/// serde_json appends ` at line L column C`; a client gets the field name instead.
fn without_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => &msg[..i],
        _ => msg,
    }
}

fn between<'a>(msg: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = msg.strip_prefix(start)?;
    rest.split_once(end).map(|(inside, _)| inside)
}

fn joined(param: Option<&str>, field: &str) -> String {
    match param {
        Some(p) => format!("{p}.{field}"),
        None => field.to_owned(),
    }
}

/// `x\`, expected one of \`a\`, \`b\`` → `subject must be one of a, b; got x`.
fn unknown_variant(subject: &str, rest: &str) -> String {
    let (found, expected) = rest.split_once("`, expected ").unwrap_or((rest, ""));
    let choices = expected.trim_start_matches("one of ").replace('`', "");
    format!("{subject} must be one of {choices}; got {found}")
}

/// serde's Rust type names as JSON words.
fn expected_words(expected: &str) -> String {
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a sequence" | "a tuple" => "an array",
        "a map" => "an object",
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object",
        e if e.starts_with("an array") || e.starts_with("a sequence") => "an array",
        e => return e.to_owned(),
    };
    words.to_owned()
}

/// serde's description of what it found (`integer \`-1\``, `string "x"`, `map`) as JSON words.
fn found_words(found: &str) -> String {
    if let Some(rest) = found.strip_prefix("string ") {
        return format!("the string {rest}");
    }
    let kinds = ["integer `", "floating point `", "boolean `"];
    for kind in kinds {
        if let Some(rest) = found.strip_prefix(kind) {
            return rest.trim_end_matches('`').to_owned();
        }
    }
    match found {
        "map" => "an object".into(),
        "sequence" => "an array".into(),
        "unit value" | "null" => "null".into(),
        f => f.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::explain;

    #[test]
    fn a_negative_integer_for_an_unsigned_field() {
        let m = explain(Some("max_tokens"), "invalid value: integer `-1`, expected u32 at line 1 column 77");
        assert_eq!(m, "max_tokens must be a non-negative integer; got -1");
    }

    #[test]
    fn wrong_types_in_json_words() {
        let m = explain(Some("temperature"), "invalid type: string \"hot\", expected f32 at line 1 column 20");
        assert_eq!(m, "temperature must be a number; got the string \"hot\"");
        let m = explain(Some("messages"), "invalid type: map, expected a sequence at line 1 column 14");
        assert_eq!(m, "messages must be an array; got an object");
        let m = explain(Some("stream"), "invalid type: integer `1`, expected a boolean at line 1 column 3");
        assert_eq!(m, "stream must be true or false; got 1");
    }

    #[test]
    fn missing_fields_and_variants_name_the_path() {
        assert_eq!(explain(None, "missing field `messages` at line 1 column 2"), "messages is required");
        assert_eq!(explain(Some("messages[0]"), "missing field `role`"), "messages[0].role is required");
        let m = explain(Some("messages[0].role"), "unknown variant `robot`, expected one of `system`, `user`");
        assert_eq!(m, "messages[0].role must be one of system, user; got robot");
    }

    #[test]
    fn unrecognised_messages_lose_only_the_position() {
        let m = explain(Some("x"), "something custom at line 1 column 5");
        assert_eq!(m, "Invalid value for 'x': something custom");
    }
}
