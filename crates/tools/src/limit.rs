//! Client-side request spacing. We stay under an API's documented rate instead of learning it
//! from 429s: each request leaves at least `1/rate` after the previous one. No burst
//! allowance on purpose: network jitter can bunch requests together on arrival, and a server
//! bucket tolerates a little bunching only if we never spend its burst ourselves.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub(crate) fn per_second(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 1.0 };
        Self { interval: Duration::from_secs_f64(1.0 / rate), next: Mutex::new(Instant::now()) }
    }

    /// Waits for this request's slot. The slot is taken when the request actually leaves, not
    /// booked ahead: a stalled process then resumes one request per interval instead of releasing
    /// every booked request at once.
    pub(crate) async fn acquire(&self) {
        loop {
            let free_at = {
                let mut next = self.next.lock().await;
                let now = Instant::now();
                if now >= *next {
                    *next = now + self.interval;
                    return;
                }
                *next
            };
            tokio::time::sleep_until(free_at).await;
        }
    }

    /// After a 429: nobody sends before `until`.
    pub(crate) async fn pause_until(&self, until: Instant) {
        let mut next = self.next.lock().await;
        if *next < until {
            *next = until;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests() {
        let l = RateLimiter::per_second(4.0);
        let start = Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
        l.pause_until(Instant::now() + Duration::from_secs(3)).await;
        l.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(4000));
    }
}
