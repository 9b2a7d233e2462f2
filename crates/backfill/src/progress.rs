//! Progress of a run: a bar (count, rate, elapsed) on a terminal (indicatif), a log line every
//! `progress_interval` otherwise, and the final summary line either way.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use crate::checkpoint::Counts;

pub struct Progress {
    bar: Option<ProgressBar>,
    interval: Duration,
    last_log: Instant,
    started: Instant,
    start_count: u64,
}

impl Progress {
    pub fn new(interval: Duration, counts: Counts) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} enqueued ({per_sec}) {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_position(counts.enqueued);
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Self { bar, interval, last_log: Instant::now(), started: Instant::now(), start_count: counts.enqueued }
    }

    pub fn update(&mut self, c: Counts, in_flight: usize) {
        if let Some(b) = &self.bar {
            b.set_position(c.enqueued);
            b.set_message(format!(
                "listed {}, skipped {}, failed {}, in flight {in_flight}",
                c.listed, c.skipped, c.failed
            ));
        } else if self.last_log.elapsed() >= self.interval {
            self.last_log = Instant::now();
            let rate = (c.enqueued - self.start_count) as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            tracing::info!(
                listed = c.listed,
                enqueued = c.enqueued,
                skipped = c.skipped,
                failed = c.failed,
                in_flight,
                rate = format!("{rate:.1}/s"),
                "backfill progress"
            );
        }
    }

    pub fn finish(&mut self, c: Counts) {
        if let Some(b) = self.bar.take() {
            b.set_position(c.enqueued);
            b.finish_and_clear();
        }
    }
}
