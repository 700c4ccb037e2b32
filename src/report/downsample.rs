//! Thinning a scatter plot of a million points without changing what it shows.
//!
//! The plot is a grid of cells a few pixels wide; a cell already holding a point of the
//! same series looks the same with a second one, so only the first point per cell and
//! series is drawn. Outliers sit alone in their cells and are always kept; points marked
//! `always` (failed and indeterminate ops) are kept whatever the grid says, because each
//! of them is evidence.

/// The grid points are thinned on.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    /// Columns across the x range.
    pub columns: usize,
    /// Rows across the y range.
    pub rows: usize,
    /// The x range `[min, max]`.
    pub x: (f64, f64),
    /// The y range `[min, max]` (already log-transformed for a log axis).
    pub y: (f64, f64),
}

impl Grid {
    fn cell(&self, x: f64, y: f64) -> usize {
        let col = scale(x, self.x, self.columns);
        let row = scale(y, self.y, self.rows);
        row * self.columns + col
    }
}

fn scale(v: f64, (lo, hi): (f64, f64), n: usize) -> usize {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || !v.is_finite() {
        return 0;
    }
    let f = ((v - lo) / (hi - lo) * n as f64).floor();
    (f.max(0.0) as usize).min(n - 1)
}

/// Which of `points` to draw: `(x, y, always)` each; returns their indices in input order.
/// At most one point per grid cell is kept unless `always` is set.
pub fn thin(points: impl IntoIterator<Item = (f64, f64, bool)>, grid: &Grid) -> Vec<usize> {
    let cells = grid.columns.max(1) * grid.rows.max(1);
    let mut taken = vec![0u64; cells.div_ceil(64)];
    let mut keep = Vec::new();
    for (i, (x, y, always)) in points.into_iter().enumerate() {
        let c = grid.cell(x, y);
        let (word, bit) = (c / 64, 1u64 << (c % 64));
        if always || taken[word] & bit == 0 {
            taken[word] |= bit;
            keep.push(i);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_points_in_a_band_become_at_most_one_per_cell_and_outliers_survive() {
        let grid = Grid {
            columns: 100,
            rows: 50,
            x: (0.0, 100.0),
            y: (0.0, 10.0),
        };
        let mut points: Vec<(f64, f64, bool)> = (0..1_000_000)
            .map(|i| (i as f64 / 10_000.0, 1.0 + (i % 7) as f64 * 0.01, false))
            .collect();
        points.push((50.0, 9.9, false)); // a lone slow op
        points.push((50.0, 1.0, true)); // a failure where ok ops are dense
        points.push((50.0, 1.0, true)); // and another on top of it
        let kept = thin(points.iter().copied(), &grid);
        assert!(kept.len() <= 100 * 50 + 2, "{}", kept.len());
        assert!(kept.len() < 1_000, "{}", kept.len());
        let n = points.len();
        for i in [n - 3, n - 2, n - 1] {
            assert!(kept.contains(&i), "point {i} dropped");
        }
        // The first point of every column is kept, so the time axis has no holes.
        assert!(kept.contains(&0));
    }

    #[test]
    fn degenerate_ranges_and_nan_do_not_panic() {
        let grid = Grid {
            columns: 10,
            rows: 10,
            x: (5.0, 5.0),
            y: (0.0, 1.0),
        };
        let kept = thin(vec![(5.0, f64::NAN, false), (5.0, 2.0, false)], &grid);
        assert_eq!(kept, [0, 1]);
    }
}
