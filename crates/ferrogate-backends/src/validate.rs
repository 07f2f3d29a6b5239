//! Config checks shared by the HTTP adapters. Each check appends human-readable problems to a
//! list, so a config reports every problem at once rather than the first.

use std::collections::BTreeMap;

use reqwest::header::{HeaderName, HeaderValue};

/// `base_url` must be an absolute http(s) URL with a host and no query or fragment.
pub(crate) fn base_url(url: &str, problems: &mut Vec<String>) {
    match url::Url::parse(url) {
        Err(e) => problems.push(format!("base_url '{url}' is not a URL: {}", url_problem(e))),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            problems.push(format!("base_url '{url}' must start with http:// or https://"));
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => problems.push(format!("base_url '{url}' has no host")),
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            problems.push(format!("base_url '{url}' must not have a query or fragment"));
        }
        Ok(_) => {}
    }
}

/// `url` for `Debug` output: credentials in it (`http://user:pass@proxy:3128`) are replaced by
/// `redacted`; a URL that does not parse but may hold some is not shown at all.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_password(None);
            let _ = u.set_username("redacted");
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) if url.contains('@') => "<redacted>".to_owned(),
        Err(_) => url.to_owned(),
    }
}

/// The url crate's reasons in plain words, with what a good value looks like.
fn url_problem(e: url::ParseError) -> &'static str {
    match e {
        url::ParseError::RelativeUrlWithoutBase => "it needs a scheme and a host, like http://10.0.0.5:8000/v1",
        url::ParseError::EmptyHost => "the host is missing, like http://10.0.0.5:8000/v1",
        url::ParseError::InvalidPort => "the port must be a number from 1 to 65535",
        url::ParseError::InvalidIpv4Address | url::ParseError::InvalidIpv6Address => "the IP address is malformed",
        url::ParseError::InvalidDomainCharacter | url::ParseError::IdnaError => {
            "the host name has characters a host name cannot have"
        }
        _ => "write it like http://10.0.0.5:8000/v1",
    }
}

/// Every timeout must be positive (a zero would fail every request).
pub(crate) fn timeouts(named: &[(&str, u64)], problems: &mut Vec<String>) {
    for (field, ms) in named {
        if *ms == 0 {
            problems.push(format!("{field} must be greater than 0"));
        }
    }
}

/// Extra headers must be valid HTTP header names and values.
pub(crate) fn headers(headers: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    for (name, value) in headers {
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(format!("headers: '{name}' is not a valid header name"));
        }
        if HeaderValue::from_str(value).is_err() {
            problems.push(format!("headers: the value of '{name}' is not a valid header value"));
        }
    }
}

/// `ca_file` must be a readable PEM bundle of at least one certificate.
pub(crate) fn ca_file(file: Option<&std::path::Path>, problems: &mut Vec<String>) {
    if let Some(Err(e)) = file.map(crate::http::extra_roots) {
        problems.push(e);
    }
}

/// Between 1 and 256 HTTP/2 connections.
pub(crate) fn http2_connections(n: usize, problems: &mut Vec<String>) {
    if !(1..=256).contains(&n) {
        problems.push(format!("http2_connections must be between 1 and 256 (got {n})"));
    }
}

pub(crate) fn proxy(proxy: Option<&str>, problems: &mut Vec<String>) {
    if let Some(p) = proxy.filter(|p| reqwest::Proxy::all(*p).is_err()) {
        problems.push(format!("proxy '{p}' is not a valid proxy URL"));
    }
}

/// A static model list, when given, must name at least one model and no empty name.
pub(crate) fn models(models: Option<&[String]>, problems: &mut Vec<String>) {
    match models {
        Some([]) => problems.push("models must not be empty when given (omit it instead)".to_owned()),
        Some(list) if list.iter().any(|m| m.trim().is_empty()) => {
            problems.push("models must not contain an empty name".to_owned());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut Vec<String>)) -> Vec<String> {
        let mut p = Vec::new();
        f(&mut p);
        p
    }

    #[test]
    fn urls() {
        assert!(check(|p| base_url("http://127.0.0.1:8000/v1", p)).is_empty());
        assert!(check(|p| base_url("https://api.openai.com/v1", p)).is_empty());
        assert_eq!(check(|p| base_url("127.0.0.1:8000", p)).len(), 1);
        assert_eq!(check(|p| base_url("ftp://x/v1", p)).len(), 1);
        assert_eq!(check(|p| base_url("http://x/v1?a=b", p)).len(), 1);
        assert_eq!(check(|p| base_url("", p)).len(), 1);
        let words = check(|p| base_url("not a url", p)).join("");
        assert!(words.contains("needs a scheme and a host") && !words.contains("relative URL"), "{words}");
    }

    #[test]
    fn timeout_rules() {
        assert!(check(|p| timeouts(&[("a", 1), ("b", 10)], p)).is_empty());
        assert_eq!(check(|p| timeouts(&[("a", 0), ("b", 11), ("c", 0)], p)).len(), 2);
    }

    #[test]
    fn header_and_model_rules() {
        let bad: BTreeMap<String, String> = [("bad name".to_owned(), "v\n".to_owned())].into();
        assert_eq!(check(|p| headers(&bad, p)).len(), 2);
        assert_eq!(check(|p| models(Some(&[]), p)).len(), 1);
        assert_eq!(check(|p| models(Some(&[" ".to_owned()]), p)).len(), 1);
        assert!(check(|p| models(None, p)).is_empty());
        assert_eq!(check(|p| proxy(Some("::"), p)).len(), 1);
    }
}
