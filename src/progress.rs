//! Progress display for long steps (SRS generation, keygen, proving, calibration), on stderr.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with a message; hidden when stderr is not a terminal.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"));
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar counting `total` steps of `what`; hidden when stderr is not a terminal.
pub fn counter(what: &str, total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed}, {eta} left]").expect("valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

/// Runs `work` under a spinner and logs how long it took.
pub fn timed<T>(what: &str, work: impl FnOnce() -> T) -> (T, f64) {
    let bar = spinner(what.to_string());
    let start = std::time::Instant::now();
    let out = work();
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    tracing::info!("{what}: {seconds:.2} s");
    (out, seconds)
}
