//! Guardrail quality on labelled corpora written for it (tests/guardrails/*.jsonl): injections
//! of every family next to benign prompts that look like them, and PII with look-alikes (invalid
//! Luhn/mod-97 numbers, versions, dates, hashes). Prints the confusion matrices and asserts
//! floors set from measured numbers (docs/GUARDRAILS.md). Never edit a label to pass.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::BTreeMap;

use ferrogate_core::guardrails::Scanner;
use ferrogate_core::guardrails::policy::DEFAULT_THRESHOLD;
use serde_json::Value;

/// Floors of the held-out corpus, set just under what was measured (docs/GUARDRAILS.md).
const HELD_OUT_PRECISION: f64 = 0.95;
const HELD_OUT_RECALL: f64 = 0.45;

fn corpus(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/guardrails/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[derive(Default, Debug)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
    tn: usize,
}

impl Counts {
    fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
    fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
}

/// Scores every prompt of `file` at the default threshold; prints misses, false positives,
/// the confusion matrix and per-family accuracy.
fn evaluate_injection(file: &str) -> Counts {
    let scanner = Scanner::shared().unwrap();
    let mut c = Counts::default();
    let mut by_family: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for row in corpus(file) {
        let text = row["text"].as_str().unwrap();
        let truth = row["label"] == "injection";
        let (score, _) = scanner.injection.score(text);
        let said = score >= DEFAULT_THRESHOLD;
        let fam = by_family.entry(row["family"].as_str().unwrap().to_owned()).or_default();
        fam.1 += 1;
        fam.0 += usize::from(said == truth);
        match (truth, said) {
            (true, true) => c.tp += 1,
            (false, true) => {
                c.fp += 1;
                println!("false positive ({score:.2}): {text}");
            }
            (true, false) => {
                c.fn_ += 1;
                println!("miss ({score:.2}): {}", text.escape_default());
            }
            (false, false) => c.tn += 1,
        }
    }
    println!("{file} @ {DEFAULT_THRESHOLD}: {c:?}");
    println!("precision {:.3} recall {:.3} f1 {:.3}", c.precision(), c.recall(), c.f1());
    for (family, (right, n)) in &by_family {
        println!("  {family:<14} {right}/{n} right");
    }
    c
}

/// The development corpus: the rules were revised while looking at its misses, so its numbers
/// are optimistic (docs/GUARDRAILS.md reports the first, unrevised run too).
#[test]
fn injection_on_the_development_corpus() {
    let c = evaluate_injection("injection_corpus.jsonl");
    assert!(c.tp + c.fn_ >= 75 && c.fp + c.tn >= 75, "the corpus shrank: {c:?}");
    assert!(c.precision() >= 0.95, "precision {:.3}", c.precision());
    assert!(c.recall() >= 0.95, "recall {:.3}", c.recall());
}

/// The held-out corpus, written after the rules were frozen and never used to revise them.
#[test]
fn injection_on_the_held_out_corpus() {
    let c = evaluate_injection("injection_heldout.jsonl");
    assert!(c.tp + c.fn_ >= 35 && c.fp + c.tn >= 35, "the corpus shrank: {c:?}");
    assert!(c.precision() >= HELD_OUT_PRECISION, "precision {:.3}", c.precision());
    assert!(c.recall() >= HELD_OUT_RECALL, "recall {:.3}", c.recall());
}

#[test]
fn pii_precision_and_recall_per_kind() {
    let scanner = Scanner::shared().unwrap();
    let mut kinds: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut total = Counts::default();
    for row in corpus("pii_corpus.jsonl") {
        let text = row["text"].as_str().unwrap();
        let mut expected: Vec<String> =
            row["pii"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        let found: Vec<&str> = scanner.pii.find(text).into_iter().map(|f| f.rule).collect();
        for rule in &found {
            let c = kinds.entry(rule).or_default();
            match expected.iter().position(|e| e == rule) {
                Some(i) => {
                    expected.remove(i);
                    c.tp += 1;
                    total.tp += 1;
                }
                None => {
                    c.fp += 1;
                    total.fp += 1;
                    println!("false positive {rule}: {text}");
                }
            }
        }
        for missed in expected {
            let rule = ferrogate_core::guardrails::PII_RULES.iter().find(|r| **r == missed).copied().unwrap();
            kinds.entry(rule).or_default().fn_ += 1;
            total.fn_ += 1;
            println!("miss {missed}: {text}");
        }
    }
    for (kind, c) in &kinds {
        println!(
            "  {kind:<11} tp {:>2} fp {:>2} fn {:>2}  precision {:.3} recall {:.3}",
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall()
        );
    }
    println!("pii overall: {total:?} precision {:.3} recall {:.3}", total.precision(), total.recall());
    assert!(total.tp + total.fn_ >= 40, "the corpus shrank");
    assert!(total.precision() >= 0.95, "precision {:.3}", total.precision());
    assert!(total.recall() >= 0.9, "recall {:.3}", total.recall());
    assert_eq!(kinds.get("pii.card").map_or(0, |c| c.fp), 0, "an invalid-Luhn number matched as a card");
}
