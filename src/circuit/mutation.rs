//! Constraint mutation, for the test suite: every explicit check a hinted gadget adds (a range
//! check, an equality, a bit or zero assertion) has a name, and a test of this crate can drop
//! one of them on its own thread to show that some test then fails: a check no test misses is a
//! check no test needs. Outside this crate's unit tests every check is always laid out.

/// Whether the check `name` is laid out: always, except in this crate's unit tests while
/// [`without`] drops it.
#[inline(always)]
pub(crate) fn keep(name: &'static str) -> bool {
    #[cfg(test)]
    {
        DROPPED.with(|dropped| dropped.get() != Some(name))
    }
    #[cfg(not(test))]
    {
        let _ = name;
        true
    }
}

#[cfg(test)]
thread_local! {
    static DROPPED: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the check `name` dropped (on this thread).
#[cfg(test)]
pub(crate) fn without<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    DROPPED.with(|dropped| dropped.set(Some(name)));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    DROPPED.with(|dropped| dropped.set(None));
    out.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Every named check, as the gadgets spell them.
#[cfg(test)]
pub(crate) const CHECKS: &[&str] = &[
    "rescale: quotient range",
    "rescale: remainder range",
    "rescale: recomposition",
    "rescale split: sign is a bit",
    "rescale split: low range",
    "relu: sign is a bit",
    "relu: magnitude range",
    "extremum: differences range",
    "extremum: one difference is zero",
    "division: quotient range",
    "division: remainder range",
    "division: remainder below twice the divisor",
    "division: recomposition",
    "mean: quotient range",
    "mean: remainder range",
    "mean: remainder below the divisor",
    "mean: recomposition",
    "instances: packed value range",
    "instances: range lookup",
];
