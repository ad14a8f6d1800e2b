//! The seeded jitter every implementation of the contract must share.
//!
//! It is stateless: the same [`Config::seed`](crate::Config::seed), stream and counter
//! give the same value, so a reference model (the `silent-refresh-model` crate) predicts
//! the machine's refresh windows and backoffs exactly without sharing a random number
//! generator with it. The machine keys [`Stream::RefreshWindow`] by the token's
//! generation, [`Stream::Backoff`] by the failed attempt's id (its first step is the
//! probe after an unreachable endpoint), and
//! [`Stream::Rejections`] by the rejected token's generation.

/// Which decision a jitter value is for.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// The start of the refresh window of a generation.
    RefreshWindow = 1,
    /// The backoff after a failed attempt.
    Backoff = 2,
    /// The hold-off of a refresh after fresh tokens were rejected again.
    Rejections = 3,
}

/// A number in `[0, 1)` from the seed, the stream and a counter (SplitMix64).
#[must_use]
pub fn unit(seed: u64, stream: Stream, counter: u64) -> f64 {
    let mut z = seed
        ^ (stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ counter.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // The top 53 bits make an f64 in [0, 1).
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_in_range_deterministic_and_spread() {
        let values: Vec<f64> = (0..1000).map(|n| unit(42, Stream::Backoff, n)).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert_eq!(
            values,
            (0..1000)
                .map(|n| unit(42, Stream::Backoff, n))
                .collect::<Vec<_>>()
        );
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
        assert_ne!(unit(1, Stream::Backoff, 0), unit(2, Stream::Backoff, 0));
    }
}
