//! Plain-text tables and the small formatting helpers the commands share.
//! Columns are sized to their content (capped, so one long URL cannot push
//! the rest off screen); scripts use `--json`, never these tables.

/// Widest a cell may be before it is cut with an ellipsis.
const MAX_CELL: usize = 48;

pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| cut(&c, MAX_CELL)).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.zip(&widths).enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                out.push_str(cell);
                if i + 1 < widths.len() {
                    out.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
                }
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = line(&mut self.headers.iter().copied());
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
        }
        out
    }
}

/// At most `max` characters, the last one an ellipsis when cut.
pub fn cut(s: &str, max: usize) -> String {
    let s = s.replace(['\n', '\r', '\t'], " ");
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub use outboxd_admin::format::{age, time};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["1".into(), "payments".into()]);
        t.row(vec!["12".into(), "x".into()]);
        assert_eq!(t.render(), "ID  NAME\n1   payments\n12  x\n");
    }

    #[test]
    fn long_cells_are_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("a\nb", 10), "a b");
        assert_eq!(cut("héllo", 5), "héllo");
    }
}
