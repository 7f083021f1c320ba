//! User counters: named totals a job adds to while it maps and reduces
//! (`emit.counter("bad_rows").add(1)`). The engine sums them over the
//! winning attempts of a job's tasks, so a retried task counts once, and
//! `harrow status` shows them.

use std::collections::BTreeMap;

/// The counters of one share of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    values: BTreeMap<String, u64>,
}

impl Counters {
    /// The counter called `name`, created at zero on first use.
    pub fn counter(&mut self, name: &str) -> Counter<'_> {
        if !self.values.contains_key(name) {
            self.values.insert(name.to_string(), 0);
        }
        Counter(self.values.get_mut(name).expect("inserted above"))
    }

    /// The value of `name`; 0 if it was never used.
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    /// Adds every counter of `other` to this one.
    pub fn merge(&mut self, other: &Counters) {
        for (name, value) in other.iter() {
            self.counter(name).add(value);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.values
            .iter()
            .map(|(name, value)| (name.as_str(), *value))
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl<S: Into<String>> FromIterator<(S, u64)> for Counters {
    fn from_iter<I: IntoIterator<Item = (S, u64)>>(iter: I) -> Self {
        let mut counters = Counters::default();
        for (name, value) in iter {
            counters.counter(&name.into()).add(value);
        }
        counters
    }
}

/// One counter, borrowed from its [`Counters`].
#[derive(Debug)]
pub struct Counter<'a>(&'a mut u64);

impl Counter<'_> {
    /// Adds `n`; saturates rather than wrapping.
    pub fn add(self, n: u64) {
        *self.0 = self.0.saturating_add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_merge() {
        let mut a = Counters::default();
        a.counter("bad_rows").add(2);
        a.counter("bad_rows").add(1);
        let b: Counters = [("bad_rows", 4), ("lines", 9)].into_iter().collect();
        a.merge(&b);
        assert_eq!(a.get("bad_rows"), 7);
        assert_eq!(a.get("lines"), 9);
        assert_eq!(a.get("never"), 0);
        a.counter("lines").add(u64::MAX);
        assert_eq!(a.get("lines"), u64::MAX);
    }
}
