//! Which line of a TOML file sets a key path (`backends.ol.kind`), so `config check` can point
//! at it. A line scanner over `[table]` headers and `key = value` lines: enough for the paths
//! a problem names; a key it cannot place (set by the environment, say) has no line.

/// The 1-based line that sets `path`, or the line of its nearest enclosing table.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let want: Vec<&str> = path.split('.').collect();
    (1..=want.len()).rev().find_map(|n| exact_line(text, &want[..n]))
}

fn exact_line(text: &str, want: &[&str]) -> Option<usize> {
    let mut table: Vec<String> = Vec::new();
    // `[[a.b]]` tables are elements of an array: the nth one is `a.b.N`.
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = header(line) {
            table = split_key(header);
            if line.starts_with("[[") {
                let n = seen.entry(header.to_owned()).or_default();
                table.push(n.to_string());
                *n += 1;
            }
            if table == want {
                return Some(i + 1);
            }
        } else if let Some((key, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            let mut full = table.clone();
            full.extend(split_key(key));
            if full == want {
                return Some(i + 1);
            }
        }
    }
    None
}

/// `[a.b]` or `[[a.b]]` → `a.b`.
fn header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?.split(']').next()?;
    Some(inner.trim_start_matches('['))
}

fn split_key(key: &str) -> Vec<String> {
    key.split('.').map(|p| p.trim().trim_matches('"').trim_matches('\'').to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const FILE: &str = "[server]\nlisten = \"x\"\n\n[backends.ol]\nkind = \"olama\"\n\"base_url\" = \"u\"\n";

    #[test]
    fn array_tables_are_counted() {
        let file = "[[limits.rules]]\nname = \"a\"\n[[limits.rules]]\nname = \"b\"\nscope = \"x\"\n";
        assert_eq!(line_of(file, "limits.rules.1.scope"), Some(5));
        assert_eq!(line_of(file, "limits.rules.0.scope"), Some(1));
    }

    #[test]
    fn keys_and_tables_are_found() {
        assert_eq!(line_of(FILE, "server.listen"), Some(2));
        assert_eq!(line_of(FILE, "backends.ol.kind"), Some(5));
        assert_eq!(line_of(FILE, "backends.ol.base_url"), Some(6));
        assert_eq!(line_of(FILE, "backends.ol.timeout_ms"), Some(4));
        assert_eq!(line_of(FILE, "tiers.small"), None);
    }
}
