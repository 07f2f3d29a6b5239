//! Tiered routing: a transparent classifier that scores a request between 0 (simple) and 1
//! (complex) from features anyone can check — prompt length, conversation turns, code, math and
//! reasoning cues, the `max_tokens` asked for — and sends it to the small or the large tier.
//!
//! The score is a weighted sum of features each in [0, 1], clamped to [0, 1]; at or above
//! `threshold` it goes to the large tier. Weights and threshold come from config, and the
//! decision is explained to the client (`x-ferrogate-route: tier=small score=0.21`).
//!
//! Invariant: pure and cheap (one pass over the text, no allocation per word); the same request
//! always gets the same decision.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Small,
    Large,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Small => "small",
            Tier::Large => "large",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s.trim().to_ascii_lowercase().as_str() {
            "small" => Some(Tier::Small),
            "large" => Some(Tier::Large),
            _ => None,
        }
    }
}

/// Feature weights; each feature is in [0, 1]. Also the `[tiers.weights]` config section.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierWeights {
    /// Prompt tokens / `length_scale` (capped at 1).
    pub length: f64,
    /// Earlier turns in the conversation / 8.
    pub turns: f64,
    /// Code: fences, or lines that look like code.
    pub code: f64,
    /// Math: formulas, equations, math words.
    pub math: f64,
    /// Reasoning cues: "step by step", "why", "prove", "compare", "plan", …
    pub reasoning: f64,
    /// Requested `max_tokens` / `max_tokens_scale` (capped at 1).
    pub max_tokens: f64,
}

impl Default for TierWeights {
    fn default() -> Self {
        Self { length: 0.3, turns: 0.1, code: 0.3, math: 0.2, reasoning: 0.3, max_tokens: 0.15 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TierConfig {
    pub weights: TierWeights,
    /// Score at or above which the large tier serves.
    pub threshold: f64,
    /// Prompt tokens that count as a full length feature.
    pub length_scale: u32,
    /// `max_tokens` that counts as a full feature.
    pub max_tokens_scale: u32,
}

impl Default for TierConfig {
    fn default() -> Self {
        Self { weights: TierWeights::default(), threshold: 0.35, length_scale: 1500, max_tokens_scale: 2048 }
    }
}

/// What the classifier looks at, extracted from the request by the caller.
#[derive(Debug, Clone, Copy)]
pub struct TierInput<'a> {
    /// All text of the prompt (every message's text, or the raw prompt).
    pub text: &'a str,
    /// Messages before the last one (0 for a one-shot question).
    pub prior_turns: usize,
    pub prompt_tokens: u32,
    pub max_tokens: Option<u32>,
}

/// Feature values, each in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Features {
    pub length: f64,
    pub turns: f64,
    pub code: f64,
    pub math: f64,
    pub reasoning: f64,
    pub max_tokens: f64,
}

/// Why a tier was chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    Score,
    /// Pinned by a rule: `header`, `key`, `tenant`.
    Pinned(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub tier: Tier,
    pub score: f64,
    pub reason: Reason,
    pub features: Features,
}

/// `tier=small score=0.21`, plus `pinned=header` when a rule decided.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tier={} score={:.2}", self.tier.as_str(), self.score)?;
        if let Reason::Pinned(by) = self.reason {
            write!(f, " pinned={by}")?;
        }
        Ok(())
    }
}

pub fn features(cfg: &TierConfig, input: &TierInput<'_>) -> Features {
    let ratio = |v: f64, scale: u32| (v / f64::from(scale.max(1))).min(1.0);
    Features {
        length: ratio(f64::from(input.prompt_tokens), cfg.length_scale),
        turns: (input.prior_turns as f64 / 8.0).min(1.0),
        code: code_feature(input.text),
        math: math_feature(input.text),
        reasoning: reasoning_feature(input.text),
        max_tokens: input.max_tokens.map_or(0.0, |m| ratio(f64::from(m), cfg.max_tokens_scale)),
    }
}

/// Scores `input` and picks a tier (a `pin` wins over the score, which is still reported).
pub fn classify(cfg: &TierConfig, input: &TierInput<'_>, pin: Option<(Tier, &'static str)>) -> Decision {
    let f = features(cfg, input);
    let w = &cfg.weights;
    let score = (w.length * f.length
        + w.turns * f.turns
        + w.code * f.code
        + w.math * f.math
        + w.reasoning * f.reasoning
        + w.max_tokens * f.max_tokens)
        .clamp(0.0, 1.0);
    match pin {
        Some((tier, by)) => Decision { tier, score, reason: Reason::Pinned(by), features: f },
        None => {
            let tier = if score >= cfg.threshold { Tier::Large } else { Tier::Small };
            Decision { tier, score, reason: Reason::Score, features: f }
        }
    }
}

const CODE_WORDS: [&str; 14] = [
    "fn ",
    "def ",
    "class ",
    "return ",
    "import ",
    "#include",
    "function ",
    "=>",
    "const ",
    "let ",
    "SELECT ",
    "public ",
    "async ",
    "struct ",
];

fn code_feature(text: &str) -> f64 {
    if text.contains("```") {
        return 1.0;
    }
    let codey = text
        .lines()
        .filter(|l| {
            let t = l.trim_end();
            t.ends_with(';') || t.ends_with('{') || t.ends_with('}') || CODE_WORDS.iter().any(|w| t.contains(w))
        })
        .count();
    (codey as f64 / 3.0).min(1.0)
}

const MATH_WORDS: [&str; 12] = [
    "equation",
    "integral",
    "derivative",
    "theorem",
    "probability",
    "matrix",
    "calculate",
    "compute",
    "solve",
    "sqrt",
    "polynomial",
    "factorial",
];

fn math_feature(text: &str) -> f64 {
    let lower = text.to_ascii_lowercase();
    let words = MATH_WORDS.iter().filter(|w| lower.contains(*w)).count() as f64;
    // Operators between digits: "3 * 4", "x^2", "2+2=".
    let bytes = text.as_bytes();
    let formulas = bytes
        .windows(3)
        .filter(|w| {
            let op = matches!(w[1], b'+' | b'*' | b'/' | b'^' | b'=');
            op && (w[0].is_ascii_alphanumeric() || w[0] == b' ') && (w[2].is_ascii_digit() || w[2] == b' ')
        })
        .count() as f64;
    ((words + formulas / 2.0) / 3.0).min(1.0)
}

const REASONING_CUES: [&str; 18] = [
    "step by step",
    "step-by-step",
    "explain why",
    "reason",
    "prove",
    "analyze",
    "analyse",
    "compare",
    "trade-off",
    "tradeoff",
    "design",
    "plan ",
    "derive",
    "justify",
    "evaluate",
    "first,",
    "then ",
    "finally",
];

fn reasoning_feature(text: &str) -> f64 {
    let lower = text.to_ascii_lowercase();
    let cues = REASONING_CUES.iter().filter(|c| lower.contains(*c)).count();
    (cues as f64 / 3.0).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> TierInput<'_> {
        TierInput { text, prior_turns: 0, prompt_tokens: (text.len() / 4) as u32, max_tokens: None }
    }

    #[test]
    fn a_greeting_is_small() {
        let d = classify(&TierConfig::default(), &input("Hi there! How are you?"), None);
        assert_eq!(d.tier, Tier::Small, "{d}");
        assert!(d.score < 0.1, "{d}");
    }

    #[test]
    fn multi_step_reasoning_over_code_is_large() {
        let text = "Analyze the following Rust function step by step. First, explain why it can \
                    deadlock; then compare two fixes and justify the trade-off.\n```rust\n\
                    fn transfer(a: &Mutex<u64>, b: &Mutex<u64>) {\n    let x = a.lock();\n    \
                    let y = b.lock();\n}\n```";
        let d = classify(&TierConfig::default(), &input(text), None);
        assert_eq!(d.tier, Tier::Large, "{d}");
        assert_eq!((d.features.code, d.features.reasoning), (1.0, 1.0));
    }

    #[test]
    fn math_and_long_outputs_raise_the_score() {
        let cfg = TierConfig::default();
        let plain = classify(&cfg, &input("Tell me about cats."), None).score;
        let math = classify(&cfg, &input("Solve the equation 3*x^2 + 2*x = 7 and compute x."), None);
        assert!(math.features.math >= 0.9 && math.score > plain, "{math}");
        let long = TierInput { max_tokens: Some(4096), ..input("Tell me about cats.") };
        assert!(classify(&cfg, &long, None).score >= plain + 0.15);
    }

    #[test]
    fn pins_win_and_the_explanation_reads_well() {
        let d = classify(&TierConfig::default(), &input("hi"), Some((Tier::Large, "header")));
        assert_eq!(d.tier, Tier::Large);
        assert_eq!(d.to_string(), "tier=large score=0.00 pinned=header");
        let d = classify(&TierConfig::default(), &input("hi"), None);
        assert_eq!(d.to_string(), "tier=small score=0.00");
    }

    #[test]
    fn thresholds_and_weights_come_from_config() {
        let text = "Compare cats and dogs.";
        let cfg = TierConfig { threshold: 0.05, ..TierConfig::default() };
        assert_eq!(classify(&cfg, &input(text), None).tier, Tier::Large);
        let cfg = TierConfig { weights: TierWeights { reasoning: 0.0, ..TierWeights::default() }, ..cfg };
        assert_eq!(classify(&cfg, &input(text), None).tier, Tier::Small);
    }

    #[test]
    fn conversation_turns_and_length_count() {
        let cfg = TierConfig::default();
        let long = "word ".repeat(6000);
        let d = classify(&cfg, &TierInput { text: &long, prior_turns: 8, prompt_tokens: 6000, max_tokens: None }, None);
        assert_eq!((d.features.length, d.features.turns), (1.0, 1.0));
        assert_eq!(d.tier, Tier::Large);
    }
}
