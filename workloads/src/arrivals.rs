//! Open-loop arrival times: a Poisson process per worker.
//!
//! Arrivals are scheduled independently of how fast the cluster answers, so a stalled
//! cluster shows up as latency (ops wait in the worker's queue) instead of silently
//! lowering the offered load — the coordinated-omission trap of closed-loop clients.

use rand::Rng;
use rand::rngs::StdRng;

use crate::GenOpts;

pub struct Arrivals {
    rng: StdRng,
    /// Mean gap between arrivals, ns.
    mean_gap_ns: f64,
    now_ns: f64,
}

impl Arrivals {
    /// Worker `worker`'s arrivals, at `rate_per_s / concurrency` on average.
    pub fn new(opts: &GenOpts, worker: usize) -> Arrivals {
        let per_worker = (opts.rate_per_s / opts.concurrency.max(1) as f64).max(1e-6);
        Arrivals {
            rng: crate::rng(opts.seed, "arrivals", worker as u64),
            mean_gap_ns: 1e9 / per_worker,
            now_ns: 0.0,
        }
    }

    /// The next arrival, ns since the run began; strictly increasing.
    pub fn next_ns(&mut self) -> u64 {
        // Inverse-CDF sampling of the exponential distribution; 1 - u avoids ln(0).
        let u: f64 = self.rng.random();
        let gap = -(1.0 - u).ln() * self.mean_gap_ns;
        self.now_ns += gap.max(1.0);
        self.now_ns as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_rate_matches_the_requested_rate() {
        let opts = GenOpts {
            seed: 3,
            concurrency: 5,
            rate_per_s: 500.0,
        };
        let mut a = Arrivals::new(&opts, 2);
        let n = 20_000;
        let mut last = 0;
        for _ in 0..n {
            let t = a.next_ns();
            assert!(t > last);
            last = t;
        }
        // 100 ops/s per worker: 20k arrivals take about 200 s; Poisson noise is ~1%.
        let secs = last as f64 / 1e9;
        assert!((secs - 200.0).abs() < 6.0, "took {secs} s");
    }

    #[test]
    fn gaps_are_exponential_not_constant() {
        let opts = GenOpts {
            seed: 3,
            concurrency: 1,
            rate_per_s: 1000.0,
        };
        let mut a = Arrivals::new(&opts, 0);
        let mut prev = 0;
        let gaps: Vec<u64> = (0..10_000)
            .map(|_| {
                let t = a.next_ns();
                let g = t - prev;
                prev = t;
                g
            })
            .collect();
        // For an exponential distribution about 36.8% of gaps exceed the mean (1 ms).
        let over = gaps.iter().filter(|g| **g > 1_000_000).count() as f64 / gaps.len() as f64;
        assert!(
            (over - 0.368).abs() < 0.03,
            "fraction over the mean: {over}"
        );
    }
}
