//! Validated, row-major `f32` feature matrices.

use crate::error::{EngineError, Result};

/// A dense row-major matrix of `f32` features whose values are finite or NaN (missing).
///
/// Built once at the edge with [`Matrix::new`], which rejects ±inf; the engine then trusts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    data: Vec<f32>,
    n_cols: usize,
    has_nan: bool,
}

impl Matrix {
    /// Wraps a row-major buffer. `names` gives the column names used in error messages;
    /// it may be empty, in which case columns are called `f0`, `f1`, ...
    pub fn new(data: Vec<f32>, n_cols: usize, names: &[String]) -> Result<Self> {
        if n_cols == 0 || !data.len().is_multiple_of(n_cols) {
            return Err(EngineError::Shape { len: data.len(), n_cols });
        }
        let mut has_nan = false;
        for (pos, &v) in data.iter().enumerate() {
            if !v.is_finite() {
                if v.is_nan() {
                    has_nan = true;
                    continue;
                }
                let col = pos % n_cols;
                return Err(EngineError::NonFinite {
                    row: pos / n_cols,
                    column: names.get(col).cloned().unwrap_or_else(|| format!("f{col}")),
                    value: v,
                });
            }
        }
        Ok(Self { data, n_cols, has_nan })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.data.len() / self.n_cols
    }

    /// Number of columns (features).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    /// True when some value is missing (NaN).
    pub fn has_nan(&self) -> bool {
        self.has_nan
    }

    /// The whole row-major buffer.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
}

/// Checks a single row for ±inf, naming the column; used on the single-row scoring path.
pub(crate) fn check_row(row: &[f32], names: &[String]) -> Result<()> {
    match row.iter().position(|v| v.is_infinite()) {
        None => Ok(()),
        Some(col) => Err(EngineError::NonFinite {
            row: 0,
            column: names.get(col).cloned().unwrap_or_else(|| format!("f{col}")),
            value: row[col],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_infinity_with_row_and_column() {
        let names = vec!["a".to_string(), "b".to_string()];
        let err = Matrix::new(vec![1.0, 2.0, 3.0, f32::NEG_INFINITY], 2, &names).unwrap_err();
        assert_eq!(err, EngineError::NonFinite { row: 1, column: "b".into(), value: f32::NEG_INFINITY });
    }

    #[test]
    fn accepts_nan_and_rejects_ragged_buffers() {
        let m = Matrix::new(vec![f32::NAN, 1.0], 2, &[]).unwrap();
        assert_eq!(m.n_rows(), 1);
        assert!(matches!(Matrix::new(vec![1.0, 2.0, 3.0], 2, &[]), Err(EngineError::Shape { .. })));
    }
}
