//! A plain-text table for the terminal: columns padded to their widest cell, numbers right-aligned.

use std::fmt;

pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<'a>(header: impl IntoIterator<Item = &'a str>) -> Self {
        Self { rows: vec![header.into_iter().map(str::to_owned).collect()] }
    }

    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }
}

fn numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..cols)
            .map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        // A column of numbers (header aside) is right-aligned, header included.
        let right: Vec<bool> = (0..cols)
            .map(|c| self.rows.len() > 1 && self.rows[1..].iter().all(|r| r.get(c).is_none_or(|s| numeric(s))))
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let w = width[c];
                if c > 0 {
                    line.push_str("  ");
                }
                if right[c] { line.push_str(&format!("{cell:>w$}")) } else { line.push_str(&format!("{cell:<w$}")) }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_and_right_aligns_numbers() {
        let mut t = Table::new(["NAME", "N"]);
        t.row(["acme".to_owned(), "12345".to_owned()]);
        t.row(["a".to_owned(), "7".to_owned()]);
        assert_eq!(t.to_string(), "NAME      N\nacme  12345\na         7\n");
    }
}
