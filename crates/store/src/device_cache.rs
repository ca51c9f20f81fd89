//! What the `devices` table holds for the devices this handle has written, so that an ingest
//! batch writes only the devices that are new or changed.
//!
//! A fleet sends one sample per device per interval, so nearly every batch names thousands of
//! devices whose row it leaves as it is. Asking SQLite to find that out (an upsert whose
//! update is skipped by its WHERE clause) cost about 3 µs per sample, a third of the
//! writer's time; a hash lookup costs well under one.
//!
//! The cache is write-through: it learns a device's row only from a committed transaction of
//! this handle, read back from the database the first time and derived by the upsert's own
//! rules after that. Only ingest writes `devices`, so it cannot go stale within a process. A
//! second process writing the same file (a CLI command beside a server) could change a
//! device's cohort or labels behind it; the server then restores its own view only when a
//! sample carries different values. It holds at most [`MAX_DEVICES`] devices and starts over
//! when full, which costs upserts, never correctness.

use std::sync::Mutex;

/// Devices remembered before the cache starts over (about 100 bytes each).
const MAX_DEVICES: usize = 250_000;

/// A device's row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownDevice {
    pub cohort: Option<Box<str>>,
    /// Labels as JSON object text, `{}` when none.
    pub labels: Box<str>,
    pub first_seen: i64,
}

/// What one batch says about a device: the values the upsert writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceUpdate<'a> {
    pub id: &'a str,
    pub cohort: Option<&'a str>,
    /// `{}` when the batch gave no labels (keeps the stored ones).
    pub labels: &'a str,
    pub first: i64,
    pub last: i64,
}

impl KnownDevice {
    /// The row after `u` is applied, by the rules of the ingest upsert: a given cohort
    /// replaces the stored one, given labels replace the stored ones, first-seen only moves
    /// back.
    pub fn updated(&self, u: &DeviceUpdate<'_>) -> KnownDevice {
        KnownDevice {
            cohort: u.cohort.map(Box::from).or_else(|| self.cohort.clone()),
            labels: if u.labels == "{}" { self.labels.clone() } else { Box::from(u.labels) },
            first_seen: self.first_seen.min(u.first),
        }
    }

    /// Whether applying `u` would change the row.
    pub fn changed_by(&self, u: &DeviceUpdate<'_>) -> bool {
        u.cohort.is_some_and(|c| self.cohort.as_deref() != Some(c))
            || (u.labels != "{}" && u.labels != &*self.labels)
            || u.first < self.first_seen
    }
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct DeviceCache {
    known: Mutex<foldhash::HashMap<Box<str>, KnownDevice>>,
}

impl std::fmt::Debug for DeviceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A store handle is printed in logs; thousands of devices are not.
        let known = self.known.lock().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("DeviceCache").field("known", &known).finish()
    }
}

/// Which devices of a batch must be written, and how the cache learns the result.
#[derive(Debug, Default)]
pub(crate) struct DevicePlan {
    /// Indexes (into the batch's merged updates) of devices to upsert.
    pub write: Vec<usize>,
    /// Of those, the devices the cache did not know: their rows are read back after the
    /// upsert.
    pub unknown: Vec<usize>,
    /// Rows of changed known devices, as they will be after the commit.
    pub changed: Vec<(Box<str>, KnownDevice)>,
}

impl DeviceCache {
    /// Sorts a batch's devices into unchanged (skipped), changed and unknown ones.
    pub fn plan(&self, updates: &[DeviceUpdate<'_>]) -> DevicePlan {
        let known = self.known.lock().expect("device cache lock");
        let mut plan = DevicePlan::default();
        for (i, u) in updates.iter().enumerate() {
            match known.get(u.id) {
                None => {
                    plan.write.push(i);
                    plan.unknown.push(i);
                }
                Some(k) if k.changed_by(u) => {
                    plan.write.push(i);
                    plan.changed.push((Box::from(u.id), k.updated(u)));
                }
                Some(_) => {}
            }
        }
        plan
    }

    /// Records rows a committed transaction wrote or read.
    pub fn learn(&self, rows: impl IntoIterator<Item = (Box<str>, KnownDevice)>) {
        let mut known = self.known.lock().expect("device cache lock");
        for (id, row) in rows {
            if known.len() >= MAX_DEVICES && !known.contains_key(&id) {
                known.clear();
            }
            known.insert(id, row);
        }
    }

    /// Devices remembered (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.known.lock().expect("device cache lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update<'a>(id: &'a str, cohort: Option<&'a str>, labels: &'a str, first: i64) -> DeviceUpdate<'a> {
        DeviceUpdate { id, cohort, labels, first, last: first }
    }

    fn row(cohort: Option<&str>, labels: &str, first_seen: i64) -> KnownDevice {
        KnownDevice { cohort: cohort.map(Box::from), labels: Box::from(labels), first_seen }
    }

    #[test]
    fn only_new_or_changed_devices_are_written() {
        let cache = DeviceCache::default();
        cache.learn([(Box::from("a"), row(Some("scanner"), r#"{"fw":"4.2"}"#, 100))]);
        let updates = [
            update("a", Some("scanner"), r#"{"fw":"4.2"}"#, 200), // same values, later sample
            update("a", None, "{}", 150),                         // nothing given
            update("a", Some("phone"), "{}", 200),                // cohort changed
            update("a", None, r#"{"fw":"4.3"}"#, 200),            // labels changed
            update("a", None, "{}", 50),                          // an older sample
            update("b", None, "{}", 50),                          // unknown device
        ];
        let plan = cache.plan(&updates);
        assert_eq!(plan.write, vec![2, 3, 4, 5]);
        assert_eq!(plan.unknown, vec![5]);
        let rows: Vec<KnownDevice> = plan.changed.into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            rows,
            vec![
                row(Some("phone"), r#"{"fw":"4.2"}"#, 100),
                row(Some("scanner"), r#"{"fw":"4.3"}"#, 100),
                row(Some("scanner"), r#"{"fw":"4.2"}"#, 50),
            ]
        );
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        let cache = DeviceCache::default();
        cache.learn((0..MAX_DEVICES).map(|i| (Box::from(format!("d{i}")), row(None, "{}", 0))));
        assert_eq!(cache.len(), MAX_DEVICES);
        cache.learn([(Box::from("d0"), row(None, "{}", 0))]);
        assert_eq!(cache.len(), MAX_DEVICES, "a known device replaces its entry");
        cache.learn([(Box::from("new"), row(None, "{}", 0))]);
        assert_eq!(cache.len(), 1);
    }
}
