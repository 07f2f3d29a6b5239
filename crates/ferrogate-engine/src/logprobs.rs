//! Log probabilities of sampled tokens: a log-softmax over the model's raw logits at the
//! sampled position (before penalties, temperature, truncation or grammar, as OpenAI reports
//! them), and the `k` most likely alternatives. O(vocabulary) per token, only for requests
//! that ask.

/// The most alternatives a request may ask for (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: u8 = 20;

/// `token`'s log probability and the `k` most likely tokens with theirs (most likely first).
pub(crate) fn logprobs(logits: &[f32], token: usize, k: usize) -> (f32, Vec<(usize, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let lse = max + sum.ln() as f32;
    let chosen = logits.get(token).map_or(f32::NEG_INFINITY, |&l| l - lse);
    let mut top: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if top.len() == k && top.last().is_some_and(|&(_, worst)| l <= worst) {
                continue;
            }
            let at = top.partition_point(|&(_, v)| v >= l);
            top.insert(at, (i, l));
            top.truncate(k);
        }
    }
    (chosen, top.into_iter().map(|(i, l)| (i, l - lse)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_and_top_k() {
        let logits = [0.0_f32, (2.0_f32).ln(), 0.0, (4.0_f32).ln()];
        // probabilities 1/8, 2/8, 1/8, 4/8
        let (lp, top) = logprobs(&logits, 1, 2);
        assert!((lp - (0.25_f32).ln()).abs() < 1e-5, "{lp}");
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![3, 1]);
        assert!((top[0].1 - (0.5_f32).ln()).abs() < 1e-5);
        let (_, none) = logprobs(&logits, 0, 0);
        assert!(none.is_empty());
        let total: f32 = (0..4).map(|t| logprobs(&logits, t, 0).0.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }
}
