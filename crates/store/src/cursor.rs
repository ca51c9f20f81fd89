//! Opaque keyset cursors: the sort key of the last row returned, as text.

use std::fmt;

use crate::error::StoreError;

/// Position after which the next page starts: the last row's sort value and id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cursor {
    /// Ordered by id, highest first: the next page holds ids below this one.
    Id(i64),
    /// Newest sample time first: the next page holds (ts, id) below this pair.
    Time(i64, i64),
    /// Highest score first: the next page holds (score, id) below this pair.
    Score(f64, i64),
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::Id(id) => write!(f, "i{id:x}"),
            // Times may be negative: written as the bits of the i64.
            Cursor::Time(ts, id) => write!(f, "t{:x}.{id:x}", *ts as u64),
            Cursor::Score(s, id) => write!(f, "s{:x}.{id:x}", s.to_bits()),
        }
    }
}

impl std::str::FromStr for Cursor {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadCursor(s.chars().take(64).collect());
        let hex = |t: &str| i64::from_str_radix(t, 16).map_err(|_| bad());
        match s.split_at_checked(1) {
            Some(("i", rest)) => Ok(Cursor::Id(hex(rest)?)),
            Some(("t", rest)) => {
                let (a, b) = rest.split_once('.').ok_or_else(bad)?;
                let ts = u64::from_str_radix(a, 16).map_err(|_| bad())? as i64;
                Ok(Cursor::Time(ts, hex(b)?))
            }
            Some(("s", rest)) => {
                let (a, b) = rest.split_once('.').ok_or_else(bad)?;
                let bits = u64::from_str_radix(a, 16).map_err(|_| bad())?;
                let score = f64::from_bits(bits);
                if !score.is_finite() {
                    return Err(bad());
                }
                Ok(Cursor::Score(score, hex(b)?))
            }
            _ => Err(bad()),
        }
    }
}

/// Adds the keyset condition of an id-ordered list (newest id first) to `q`, refusing
/// cursors made for other orders.
pub(crate) fn push_id_after(
    q: &mut sqlx::QueryBuilder<'_, sqlx::Sqlite>,
    cursor: Option<Cursor>,
) -> crate::Result<()> {
    match cursor {
        Some(Cursor::Id(id)) => {
            q.push(" AND id < ").push_bind(id);
        }
        Some(c) => return Err(crate::StoreError::BadCursor(format!("{c} does not fit this list"))),
        None => {}
    }
    Ok(())
}

/// Ends an id-ordered query fetched with `LIMIT limit + 1`: drops the extra row and returns
/// the page with the cursor of the next one when that row existed.
pub(crate) fn id_page<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> crate::Page<T> {
    let next_cursor = (items.len() > limit as usize).then(|| {
        items.truncate(limit as usize);
        Cursor::Id(id(items.last().expect("limit ≥ 1"))).to_string()
    });
    crate::Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for c in [
            Cursor::Id(1),
            Cursor::Id(123_456_789),
            Cursor::Score(0.731, 42),
            Cursor::Time(1_767_225_600_000, 7),
            Cursor::Time(-5, 3),
        ] {
            assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        }
        for bad in ["", "x12", "i", "izz", "s1.2.3", "s7ff8000000000000.1", "i-", "t12", "tzz.1"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }
}
