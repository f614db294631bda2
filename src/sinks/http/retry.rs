//! What to do after a request: the status table of ../shared/research/sinks-anchors.md §4.6, and
//! exponential backoff with full jitter.

use std::time::Duration;

/// The first retry waits up to this long.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// No retry waits longer than this (a `Retry-After` above it is capped too: a receiver must not
/// be able to park the sink for a day).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How a response (or a failure to get one) settles the batch it answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted.
    Delivered,
    /// Try the same batch again later, after at least the `Retry-After` the receiver asked for.
    Retry { after: Option<Duration>, reason: String },
    /// Too large: send each half on its own.
    Split,
    /// Refused for good (a 4xx other than 408, 413 and 429; 501): dropped and counted.
    Reject { reason: String },
}

/// The verdict on an HTTP status when the body does not say more.
pub fn by_status(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        413 => Verdict::Split,
        408 | 429 => Verdict::Retry { after: retry_after, reason: format!("HTTP {status}") },
        501 => Verdict::Reject { reason: "HTTP 501".into() },
        500..=599 => Verdict::Retry { after: retry_after, reason: format!("HTTP {status}") },
        _ => Verdict::Reject { reason: format!("HTTP {status}") },
    }
}

/// `Retry-After` in its delay-seconds form. The HTTP-date form is rare from log receivers and is
/// treated as absent: the backoff still applies.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Exponential backoff with full jitter: the n-th consecutive failure waits a uniformly random
/// time in [0, min(MAX, FIRST * 2^n)], and never less than what the receiver asked for.
#[derive(Debug)]
pub struct Backoff {
    failures: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff seeded from the clock and the thread (two lanes must not retry in lockstep).
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let thread = std::thread::current().id();
        let mix = format!("{thread:?}").bytes().fold(now, |h, b| h.rotate_left(5) ^ u64::from(b));
        Backoff { failures: 0, rng: mix | 1 }
    }

    /// The wait before the next attempt.
    pub fn next(&mut self, asked: Option<Duration>) -> Duration {
        let ceiling = FIRST_BACKOFF.saturating_mul(1 << self.failures.min(16)).min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        let jitter = ceiling.mul_f64(self.uniform());
        jitter.max(asked.unwrap_or_default().min(MAX_BACKOFF))
    }

    /// A success: the next failure starts from the first step again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// xorshift64*: jitter needs spread, not unpredictability.
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(by_status(200, None), Verdict::Delivered);
        assert_eq!(by_status(204, None), Verdict::Delivered);
        assert_eq!(by_status(413, None), Verdict::Split);
        for retried in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(by_status(retried, None), Verdict::Retry { .. }), "{retried}");
        }
        for rejected in [400, 401, 403, 404, 405, 409, 501] {
            assert!(matches!(by_status(rejected, None), Verdict::Reject { .. }), "{rejected}");
        }
        let after = Some(Duration::from_secs(7));
        assert!(
            matches!(by_status(429, after), Verdict::Retry { after: Some(d), .. } if d.as_secs() == 7)
        );
    }

    #[test]
    fn retry_after_seconds_only() {
        assert_eq!(parse_retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_full_jitter_and_honours_retry_after() {
        let mut backoff = Backoff::new();
        let mut waits = Vec::new();
        for _ in 0..40 {
            waits.push(backoff.next(None));
        }
        // Full jitter: every wait is within its step's ceiling; late steps are capped.
        for (n, wait) in waits.iter().enumerate() {
            let ceiling = FIRST_BACKOFF.saturating_mul(1 << n.min(16)).min(MAX_BACKOFF);
            assert!(*wait <= ceiling, "step {n}: {wait:?} > {ceiling:?}");
        }
        // Jittered, not constant: the capped steps spread over [0, 60 s].
        let late: Vec<_> = waits[10..].to_vec();
        assert!(
            late.iter().any(|w| *w < MAX_BACKOFF / 2) && late.iter().any(|w| *w > MAX_BACKOFF / 2)
        );
        assert!(backoff.next(Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert_eq!(backoff.next(Some(Duration::from_secs(86_400))), MAX_BACKOFF);
        backoff.reset();
        assert!(backoff.next(None) <= FIRST_BACKOFF);
    }
}
