//! Opt-in prompt and response logging (`log.prompts = true`): the text of a request and of its
//! answer, redacted, in one `request content` log line at settle. Off by default; when off,
//! nothing is captured (one bool check per request and per streamed chunk).
//!
//! Redaction first applies the guardrails' PII detectors (`ferrogate_core::guardrails::pii`,
//! docs/GUARDRAILS.md: `[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]`, `[IP]`, `[SECRET]`), then masks,
//! word by word, what they leave: other secret-looking tokens — API key prefixes (`pk-`, `rk-`,
//! …), `Bearer`'s argument, long random-looking strings (`[secret]`) — and runs of 6 or more
//! digits (`[number]`). It is a safety net, not a guarantee: a prompt can hold secrets in forms no
//! rule knows.

use ferrogate_core::Input;

/// Longest text kept per side (prompt, response), in bytes; more is cut with `…`.
const MAX_LOGGED: usize = 16 * 1024;

/// The prompt as `role: text` lines (chat) or the raw text (completions).
pub fn prompt_text(input: &Input) -> String {
    match input {
        Input::Chat { messages, .. } => {
            messages.iter().map(|m| format!("{}: {}", m.role.as_str(), m.text())).collect::<Vec<_>>().join("\n")
        }
        Input::Text(t) => t.clone(),
    }
}

fn is_email(w: &str) -> bool {
    let Some((user, domain)) = w.split_once('@') else { return false };
    !user.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

fn is_secret(w: &str) -> bool {
    let prefixes = ["sk-", "fg-", "pk-", "rk-", "ghp_", "gho_", "xoxb-", "xoxp-", "AKIA"];
    if prefixes.iter().any(|p| w.starts_with(p) && w.len() > p.len() + 8) {
        return true;
    }
    let token =
        w.len() >= 24 && w.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'='));
    let mixed = w.bytes().any(|b| b.is_ascii_digit()) && w.bytes().any(|b| b.is_ascii_alphabetic());
    token && mixed
}

fn is_number(w: &str) -> bool {
    w.bytes().filter(u8::is_ascii_digit).count() >= 6
        && w.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'(' | b')' | b'.' | b'/'))
}

/// `text` with PII (the guardrails' detectors), secret-looking tokens and long numbers masked.
pub fn redact(text: &str) -> String {
    match ferrogate_core::guardrails::Scanner::shared() {
        Ok(s) => mask_words(&s.pii.redact(text).0),
        Err(_) => mask_words(text),
    }
}

/// The word-level masks, after the PII detectors.
fn mask_words(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LOGGED) + 8);
    let mut after_bearer = false;
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end();
        let space = &piece[word.len()..];
        let core = word.trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '"' | '\'' | '(' | ')' | '<' | '>' | '.'));
        let masked = if core.is_empty() {
            None
        } else if after_bearer || is_secret(core) {
            Some("[secret]")
        } else if is_email(core) {
            Some("[email]")
        } else if is_number(core) {
            Some("[number]")
        } else {
            None
        };
        after_bearer = core.eq_ignore_ascii_case("bearer");
        match masked {
            Some(m) => out.push_str(&word.replacen(core, m, 1)),
            None => out.push_str(word),
        }
        out.push_str(space);
        if out.len() > MAX_LOGGED {
            let mut cut = MAX_LOGGED;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_emails_secrets_and_long_numbers() {
        let text = "Mail jane.doe@example.com, key sk-abcdefghijklmnop1234 or Bearer xyz123; card 4111-1111-1111-1111.\nOK 2024 fine";
        let r = redact(text);
        assert_eq!(r, "Mail [EMAIL], key [SECRET] or Bearer [secret]; card [CARD].\nOK 2024 fine");
        let t = "token fg-ABCDEFGH-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG and aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ1234";
        assert_eq!(redact(t), "token [secret] and [secret]");
        let pii = "IBAN DE89 3704 0044 0532 0130 00 from 10.1.2.3, call +44 20 7946 0958";
        assert_eq!(redact(pii), "IBAN [IBAN] from [IP], call [PHONE]");
        assert_eq!(redact("order 4111-1111-1111-1112"), "order [number]", "not a card (Luhn), still a long number");
    }

    #[test]
    fn long_text_is_cut() {
        let r = redact(&"word ".repeat(10_000));
        assert!(r.len() <= MAX_LOGGED + 4 && r.ends_with('…'));
    }
}
