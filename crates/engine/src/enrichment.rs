//! Over-representation of an attribute among affected devices.
//!
//! A fleet of `N` devices has `n` affected (open incidents); `K` devices share an attribute
//! value (say firmware 4.2) and `k` of them are affected. The *prevalence* of trouble with
//! the value is `k / K`, the fleet's base rate `n / N`, and the *lift* their ratio. Lift alone
//! ranks a value held by one affected device highest, so values are also given the
//! probability of seeing `k` or more affected devices among the `K` if incidents struck
//! devices at random: the upper tail of the hypergeometric distribution (one-sided
//! Fisher's exact test),
//!
//! `P(X ≥ k) = Σ_{i=k}^{min(K,n)} C(K, i) · C(N−K, n−i) / C(N, n)`.
//!
//! The binomials are evaluated through `ln n!` (Stirling's series with four terms above 20,
//! exact sums below), which keeps large fleets exact to about 1e-10 relative error.

/// How strongly one attribute value goes with being affected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Enrichment {
    /// Affected share of the devices with the value (`k / K`).
    pub prevalence: f64,
    /// Affected share of the fleet (`n / N`).
    pub base_rate: f64,
    /// `prevalence / base_rate` (1 = no association).
    pub lift: f64,
    /// Chance of `k` or more affected devices with the value if incidents were random.
    pub p_value: f64,
}

/// Enrichment of a value held by `with_value` of `fleet` devices, `affected_with_value` of
/// which are among the `affected` devices. Counts are clamped into a consistent table.
pub fn enrichment(fleet: u64, affected: u64, with_value: u64, affected_with_value: u64) -> Enrichment {
    let n_total = fleet.max(1);
    let big_k = with_value.min(n_total);
    let n = affected.min(n_total);
    let k = affected_with_value.min(big_k).min(n);
    let prevalence = if big_k == 0 { 0.0 } else { k as f64 / big_k as f64 };
    let base_rate = n as f64 / n_total as f64;
    let lift = if base_rate > 0.0 { prevalence / base_rate } else { 0.0 };
    Enrichment { prevalence, base_rate, lift, p_value: hypergeometric_upper_tail(n_total, big_k, n, k) }
}

/// `P(X ≥ k)` for X hypergeometric: `draws` from `population` holding `successes`.
pub fn hypergeometric_upper_tail(population: u64, successes: u64, draws: u64, k: u64) -> f64 {
    let lo = k.max((draws + successes).saturating_sub(population));
    let hi = successes.min(draws);
    if lo > hi {
        return 0.0;
    }
    let denom = ln_choose(population, draws);
    let mut p = 0.0;
    for i in lo..=hi {
        p += (ln_choose(successes, i) + ln_choose(population - successes, draws - i) - denom).exp();
    }
    p.min(1.0)
}

fn ln_choose(n: u64, k: u64) -> f64 {
    if k > n {
        return f64::NEG_INFINITY;
    }
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

fn ln_factorial(n: u64) -> f64 {
    if n < 20 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    let x2 = x * x;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x) - 1.0 / (360.0 * x * x2)
        + 1.0 / (1260.0 * x * x2 * x2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact binomial in integers (small arguments only).
    fn choose(n: u64, k: u64) -> u128 {
        if k > n {
            return 0;
        }
        (0..k).fold(1u128, |acc, i| acc * u128::from(n - i) / u128::from(i + 1))
    }

    fn exact_tail(pop: u64, succ: u64, draws: u64, k: u64) -> f64 {
        let num: u128 = (k..=succ.min(draws)).map(|i| choose(succ, i) * choose(pop - succ, draws - i)).sum();
        num as f64 / choose(pop, draws) as f64
    }

    #[test]
    fn tail_matches_exact_integer_arithmetic() {
        for &(pop, succ, draws) in &[(20u64, 7u64, 12u64), (60, 11, 9), (100, 40, 30), (90, 3, 50)] {
            for k in 0..=succ.min(draws) + 1 {
                let got = hypergeometric_upper_tail(pop, succ, draws, k);
                let want = exact_tail(pop, succ, draws, k);
                assert!(
                    (got - want).abs() <= 1e-9 * want.max(1e-12),
                    "{pop} {succ} {draws} {k}: {got} vs {want}"
                );
            }
        }
        assert!((hypergeometric_upper_tail(50, 10, 5, 0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn stirling_agrees_with_the_sum_where_they_meet() {
        let direct: f64 = (2..=25u64).map(|i| (i as f64).ln()).sum();
        assert!((ln_factorial(25) - direct).abs() < 1e-10);
    }

    #[test]
    fn the_injected_firmware_stands_out() {
        // "9 of 11 anomalous scanners run firmware 4.2; 149 devices in all run it" in a fleet
        // of 1000: strongly enriched, while a value held by half the fleet with 6 of 11 is not.
        let hot = enrichment(1000, 11, 149, 9);
        let plain = enrichment(1000, 11, 500, 6);
        assert!(hot.lift > 5.0 && hot.p_value < 1e-5, "{hot:?}");
        assert!(plain.lift < 1.2 && plain.p_value > 0.3, "{plain:?}");
        assert!((hot.prevalence - 9.0 / 149.0).abs() < 1e-12 && (hot.base_rate - 0.011).abs() < 1e-12);
    }
}
