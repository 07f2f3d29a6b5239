//! PII and secret detection and redaction: e-mail addresses, phone numbers, payment card numbers
//! (Luhn-checked), IBANs (mod-97-checked), IPv4/IPv6 addresses, and API-key/secret formats
//! (`sk-…`, `AKIA…`, `ghp_…`, `xox[bp]-…`, `fg-…`, Google `AIza…`, JWTs, PEM private keys,
//! `Bearer` tokens). Candidates come from regexes; checksums and address parsing reject the
//! look-alikes (a 16-digit order number that fails Luhn is not a card).
//!
//! Invariant: spans never overlap — a more specific detector (secret, card, IBAN) claims its
//! text before a looser one (phone) may.

use std::net::Ipv6Addr;
use std::ops::Range;

use regex::Regex;

use super::Finding;

/// Every PII rule name (the metrics `rule` label values of this check).
pub const PII_RULES: &[&str] = &["pii.secret", "pii.email", "pii.card", "pii.iban", "pii.ip", "pii.phone"];

/// One detector: a candidate pattern and a check of each candidate.
struct Detector {
    rule: &'static str,
    /// What a redacted span becomes.
    mask: &'static str,
    re: Regex,
    valid: fn(&str) -> bool,
}

/// The compiled PII detectors, in priority order.
pub struct Pii {
    detectors: Vec<Detector>,
}

const SECRET: &str = concat!(
    r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----(?s:.*?)(?:-----END (?:[A-Z]+ )*PRIVATE KEY-----|\z)",
    r"|\bsk-(?:proj-|ant-|live_|test_)?[A-Za-z0-9_-]{20,}",
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"|\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"|\bfg-[a-z0-9]{8}-[A-Za-z0-9_-]{16,}",
    r"|\bAIza[0-9A-Za-z_-]{35}",
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{16,}=*",
);
const EMAIL: &str =
    r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}\b";
const CARD: &str = r"\b\d(?:[ -]?\d){12,18}\b";
const IBAN: &str = r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b";
const IPV4: &str = r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b";
const IPV6: &str = r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}";
const PHONE: &str =
    r"\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,8})){1,5}\b|(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,3}\b";

/// Rule, mask, candidate pattern, check — in priority order.
type Spec = (&'static str, &'static str, &'static str, fn(&str) -> bool);

const SPECS: [Spec; 7] = [
    ("pii.secret", "[SECRET]", SECRET, any),
    ("pii.email", "[EMAIL]", EMAIL, any),
    ("pii.card", "[CARD]", CARD, is_card),
    ("pii.iban", "[IBAN]", IBAN, is_iban),
    ("pii.ip", "[IP]", IPV4, any),
    ("pii.ip", "[IP]", IPV6, is_ipv6),
    ("pii.phone", "[PHONE]", PHONE, is_phone),
];

/// The pattern alone decides.
fn any(_: &str) -> bool {
    true
}

impl Pii {
    pub fn new() -> Result<Self, String> {
        let detectors = SPECS
            .iter()
            .copied()
            .map(|(rule, mask, pattern, valid)| {
                let re = Regex::new(pattern).map_err(|e| format!("guardrails: PII pattern {rule}: {e}"))?;
                Ok(Detector { rule, mask, re, valid })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { detectors })
    }

    /// Every validated PII span in `text`, ordered by position, none overlapping.
    pub fn find(&self, text: &str) -> Vec<Finding> {
        self.spans(text).into_iter().map(|(span, d)| Finding { rule: d.rule, score: 1.0, span }).collect()
    }

    /// `text` with every PII span replaced by its mask (`[EMAIL]`, `[CARD]`, …), and the count.
    pub fn redact(&self, text: &str) -> (String, usize) {
        let spans = self.spans(text);
        if spans.is_empty() {
            return (text.to_owned(), 0);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (span, d) in &spans {
            out.push_str(&text[at..span.start]);
            out.push_str(d.mask);
            at = span.end;
        }
        out.push_str(&text[at..]);
        (out, spans.len())
    }

    fn spans(&self, text: &str) -> Vec<(Range<usize>, &Detector)> {
        let mut taken: Vec<(Range<usize>, &Detector)> = Vec::new();
        for d in &self.detectors {
            for m in d.re.find_iter(text) {
                let span = m.range();
                let free = !taken.iter().any(|(t, _)| t.start < span.end && span.start < t.end);
                if free && !span.is_empty() && (d.valid)(&text[span.clone()]) && bounded(text, &span) {
                    taken.push((span, d));
                }
            }
        }
        taken.sort_by_key(|(s, _)| s.start);
        taken
    }
}

/// A candidate must not be glued to more digits or letters (part of a longer token).
fn bounded(text: &str, span: &Range<usize>) -> bool {
    let before = text[..span.start].chars().next_back();
    let after = text[span.end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    !glued(before) && !glued(after)
}

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// 13–19 digits passing the Luhn checksum, not all one digit.
pub fn is_card(s: &str) -> bool {
    let d = digits(s);
    (13..=19).contains(&d.len()) && d.iter().any(|x| *x != d[0]) && luhn(&d)
}

pub fn luhn(d: &[u32]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, x)| if i % 2 == 1 { (x * 2) % 9 + u32::from(*x == 9) * 9 } else { *x })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: 15–34 characters whose rearranged numeric form is ≡ 1 (mod 97).
pub fn is_iban(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut rem: u32 = 0;
    for c in rearranged {
        let Some(v) = c.to_digit(36) else { return false };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

fn is_ipv6(s: &str) -> bool {
    s.len() >= 3 && s.parse::<Ipv6Addr>().is_ok()
}

/// 7–15 digits with a `+` country code, or a national number of 7–11 digits in at most three
/// groups (longer runs of groups are codes and references), not shaped like a date.
fn is_phone(s: &str) -> bool {
    let n = digits(s).len();
    let date = s.len() == 10 && s.as_bytes().get(4).is_some_and(|b| matches!(b, b'-' | b'/' | b'.'));
    let groups = s.split(|c: char| !c.is_ascii_digit()).filter(|g| !g.is_empty()).count();
    let international = s.starts_with('+') && (7..=15).contains(&n);
    let national = (7..=11).contains(&n) && groups <= 3;
    (international || national) && !date
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rules(text: &str) -> Vec<&'static str> {
        Pii::new().unwrap().find(text).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn luhn_and_mod97_decide() {
        assert!(is_card("4111 1111 1111 1111") && is_card("5500-0000-0000-0004") && is_card("378282246310005"));
        assert!(!is_card("4111 1111 1111 1112") && !is_card("0000 0000 0000 0000"));
        assert!(is_iban("GB82 WEST 1234 5698 7654 32") && is_iban("DE89370400440532013000"));
        assert!(!is_iban("GB82 WEST 1234 5698 7654 33"));
    }

    #[test]
    fn finds_each_kind_once_and_only_valid_ones() {
        assert_eq!(rules("mail a.b+c@mail.example.co.uk now"), vec!["pii.email"]);
        assert_eq!(rules("pay with 4111-1111-1111-1111 please"), vec!["pii.card"]);
        assert!(rules("order 4111-1111-1111-1112 shipped").iter().all(|r| *r != "pii.card"));
        assert_eq!(rules("to DE89 3704 0044 0532 0130 00."), vec!["pii.iban"]);
        assert_eq!(rules("host 192.168.1.20 and fe80::1ff:fe23:4567:890a"), vec!["pii.ip", "pii.ip"]);
        assert_eq!(rules("call +1 (415) 555-0132 today"), vec!["pii.phone"]);
        assert_eq!(rules("key sk-proj-abcdefghijklmnopqrstuvwx and AKIAIOSFODNN7EXAMPLE"), vec!["pii.secret"; 2]);
        assert!(rules("on 2024-03-15 at 12:30:45, version 3.2.1, 256 tokens").is_empty());
    }

    #[test]
    fn redaction_masks_and_never_keeps_the_secret() {
        let p = Pii::new().unwrap();
        let text = "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----\nghp_0123456789abcdefghijABCDEFGHIJ0123 x@y.io";
        let (out, n) = p.redact(text);
        assert_eq!(out, "[SECRET]\n[SECRET] [EMAIL]");
        assert_eq!(n, 3);
        assert_eq!(p.redact("nothing here"), ("nothing here".to_owned(), 0));
    }
}
