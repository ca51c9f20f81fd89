//! The samples stored since the last move into `telemetry_device_runs`, listed per device in
//! memory (see migration 0008).
//!
//! A device's latest samples are found through its runs, one row per device and move, written
//! in bulk so that a batch does not dirty one page per device (see migration 0007). Until its
//! move a sample is listed here. Before, that list was a table filled by a trigger; the
//! trigger and that table's pages were about 40 % of the ingest writer's time (writer probe,
//! 10 000 devices, 2 000-sample commits: 2.7 µs per sample with the trigger, 1.45–1.81
//! without), and the move sorted every sample again.
//!
//! Nothing durable depends on this list. The samples not yet moved are the `telemetry` rows
//! with an id above the move mark, [`Unmoved::load`] lists them when a store opens, and a move
//! holds the write lock while it takes the list, so what it writes and the mark it sets agree.
//! The list holds sample times only; readers fetch the rows through the unique (time, device)
//! index, and drop a time they see twice (a retried sample listed again after its move). A
//! transaction that fails takes back what it listed.
//!
//! The list knows the samples this handle stored. Only ingest writes telemetry and one server
//! owns ingest; samples another process stored while the server runs are listed when the
//! store next opens.

use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use sqlx::SqliteConnection;

use crate::Result;

/// Each device's listed sample times, in order.
type Times = foldhash::HashMap<Box<str>, Vec<i64>>;

#[derive(Default)]
struct Inner {
    listed: Times,
    /// Entries in `listed`.
    len: usize,
    /// The entries a move in progress is writing, still listed until it commits.
    moving: Option<Arc<Times>>,
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Unmoved {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Unmoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.inner.lock().map(|i| i.len).unwrap_or(0);
        f.debug_struct("Unmoved").field("len", &len).finish()
    }
}

/// What a move writes: the listed times of each device.
pub(crate) struct Move {
    pub times: Arc<Times>,
}

impl Unmoved {
    /// Rebuilds the list from the database: the move mark and every row above it.
    pub async fn load(&self, conn: &mut SqliteConnection) -> Result<()> {
        let moved_through: i64 = sqlx::query_scalar("SELECT moved_through FROM telemetry_device_moves")
            .fetch_one(&mut *conn)
            .await?;
        let mut inner = Inner::default();
        // Streamed: up to a move's worth of rows, which collected first would briefly take
        // tens of MB.
        let mut rows = sqlx::query_as::<_, (String, i64)>("SELECT device_id, ts FROM telemetry WHERE id > ?")
            .bind(moved_through)
            .fetch(conn);
        while let Some((device, ts)) = rows.try_next().await? {
            inner.add(&device, ts);
        }
        drop(rows);
        *self.inner.lock().expect("unmoved list lock") = inner;
        Ok(())
    }

    /// Lists the samples (device, time) a transaction writes, before it commits; returns
    /// those not listed before, for [`Unmoved::take_back`].
    pub fn add<'a>(&self, samples: impl IntoIterator<Item = (&'a str, i64)>) -> Vec<(&'a str, i64)> {
        let mut inner = self.inner.lock().expect("unmoved list lock");
        samples.into_iter().filter(|&(device, ts)| inner.add(device, ts)).collect()
    }

    /// Unlists samples of a transaction that failed.
    pub fn take_back(&self, samples: &[(&str, i64)]) {
        let mut inner = self.inner.lock().expect("unmoved list lock");
        for &(device, ts) in samples {
            if let Some(times) = inner.listed.get_mut(device)
                && let Ok(at) = times.binary_search(&ts)
            {
                times.remove(at);
                inner.len -= 1;
            }
        }
    }

    /// Samples listed and not being moved.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("unmoved list lock").len
    }

    /// Starts a move (the caller holds the database's write lock): hands over what is listed,
    /// or `None` when another move is under way. The entries stay listed until
    /// [`Unmoved::finish_move`].
    pub fn start_move(&self) -> Option<Move> {
        let mut inner = self.inner.lock().expect("unmoved list lock");
        if inner.moving.is_some() {
            return None;
        }
        let times = Arc::new(std::mem::take(&mut inner.listed));
        inner.moving = Some(times.clone());
        inner.len = 0;
        Some(Move { times })
    }

    /// Ends a move: once it has committed, the entries it wrote are dropped (the move mark
    /// that says so is in the database); if it failed, they are listed again.
    pub fn finish_move(&self, committed: bool) {
        let mut inner = self.inner.lock().expect("unmoved list lock");
        let Some(moving) = inner.moving.take() else { return };
        if !committed {
            for (device, times) in moving.iter() {
                for &ts in times {
                    inner.add(device, ts);
                }
            }
        }
    }

    /// Times of the device's latest `limit` listed samples at or before `until`, newest
    /// first (a time listed twice may appear twice).
    pub fn latest(&self, device: &str, until: i64, limit: usize) -> Vec<i64> {
        let inner = self.inner.lock().expect("unmoved list lock");
        let mut out: Vec<i64> = Vec::new();
        for times in [Some(&inner.listed), inner.moving.as_deref()].into_iter().flatten() {
            if let Some(times) = times.get(device) {
                let end = times.partition_point(|&ts| ts <= until);
                out.extend(times[..end].iter().rev().take(limit));
            }
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.truncate(limit);
        out
    }

    /// Time of the device's latest listed sample.
    pub fn latest_ts(&self, device: &str) -> Option<i64> {
        let inner = self.inner.lock().expect("unmoved list lock");
        [Some(&inner.listed), inner.moving.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|times| times.get(device).and_then(|t| t.last().copied()))
            .max()
    }
}

impl Inner {
    /// Lists one sample; false when its time was listed already.
    fn add(&mut self, device: &str, ts: i64) -> bool {
        let times = match self.listed.get_mut(device) {
            Some(t) => t,
            None => self.listed.entry(Box::from(device)).or_default(),
        };
        // Samples mostly arrive in time order; a late one is placed by its time.
        match times.last() {
            Some(&last) if last >= ts => match times.binary_search(&ts) {
                Ok(_) => return false,
                Err(at) => times.insert(at, ts),
            },
            _ => times.push(ts),
        }
        self.len += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_samples_come_newest_first_and_stop_at_until() {
        let list = Unmoved::default();
        let new = list.add([("a", 10), ("b", 10), ("a", 30), ("a", 20), ("a", 30)]);
        assert_eq!(new, vec![("a", 10), ("b", 10), ("a", 30), ("a", 20)], "a time listed again is not new");
        assert_eq!(list.len(), 4);
        assert_eq!(list.latest("a", i64::MAX, 10), vec![30, 20, 10], "the late sample sorts by time");
        assert_eq!(list.latest("a", 25, 10), vec![20, 10]);
        assert_eq!(list.latest("a", i64::MAX, 2), vec![30, 20]);
        assert_eq!(list.latest("a", 5, 10), Vec::<i64>::new());
        assert_eq!(list.latest("nobody", i64::MAX, 10), Vec::<i64>::new());
        assert_eq!(list.latest_ts("a"), Some(30));
        assert_eq!(list.latest_ts("nobody"), None);
    }

    #[test]
    fn a_failed_transaction_takes_back_only_what_it_listed() {
        let list = Unmoved::default();
        list.add([("a", 10)]);
        let new = list.add([("a", 10), ("a", 20)]);
        list.take_back(&new);
        assert_eq!(list.latest("a", i64::MAX, 10), vec![10]);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn entries_stay_listed_until_their_move_commits() {
        let list = Unmoved::default();
        list.add([("a", 10), ("b", 10)]);
        let m = list.start_move().unwrap();
        assert_eq!(m.times.len(), 2);
        assert!(list.start_move().is_none(), "one move at a time");
        list.add([("a", 20)]);
        assert_eq!(list.len(), 1, "only entries listed after the move began count");
        assert_eq!(list.latest("a", i64::MAX, 10), vec![20, 10], "entries being moved are still found");
        list.finish_move(true);
        assert_eq!(list.latest("a", i64::MAX, 10), vec![20]);
        assert_eq!(list.latest_ts("b"), None);
        list.start_move().unwrap();
        list.finish_move(false);
        assert_eq!(list.latest("a", i64::MAX, 10), vec![20], "a failed move lists its entries again");
        assert_eq!(list.len(), 1);
    }
}
