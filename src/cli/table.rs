//! Aligned columns for a terminal: every cell one line of visible text, and the whole row no
//! wider than the terminal when there is one (`COLUMNS`, else the terminal's own width): the
//! widest columns give way first, their cells cut with an ellipsis.

use std::io::Write;

/// Columns never shrink below this many characters (the ellipsis included).
const NARROWEST: usize = 6;
/// Between two columns.
const GAP: usize = 2;

/// The width to fit, if output goes to a terminal or `COLUMNS` says one.
pub(super) fn terminal_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse().ok()) {
        return Some(columns);
    }
    let stdout = std::io::stdout();
    if !rustix::termios::isatty(&stdout) {
        return None;
    }
    rustix::termios::tcgetwinsize(&stdout).ok().map(|w| usize::from(w.ws_col)).filter(|&w| w > 0)
}

/// Writes `headers` and `rows` as aligned columns, within `width` characters when given.
pub(super) fn write(
    out: &mut impl Write,
    headers: &[&str],
    rows: &[Vec<String>],
    width: Option<usize>,
) -> std::io::Result<()> {
    let length = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| length(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(length(cell));
        }
    }
    if let Some(limit) = width {
        fit(&mut widths, limit);
    }
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, (cell, &w)) in row.iter().zip(&widths).enumerate() {
            let shown = cut(cell, w);
            line.push_str(&shown);
            if i + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', w - length(&shown) + GAP));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// How many of the leading columns fit in `limit` at their narrowest: a terminal too narrow for
/// every column loses the last ones (tables put the least needed last).
pub(super) fn columns_that_fit(widths: &[usize], limit: usize) -> usize {
    let mut total = 0;
    for (i, &w) in widths.iter().enumerate() {
        total += w.min(NARROWEST) + if i > 0 { GAP } else { 0 };
        if total > limit {
            return i.max(1);
        }
    }
    widths.len()
}

/// Narrows the widest columns until the row fits in `limit` (or every column is as narrow as
/// it may be).
pub(super) fn fit(widths: &mut [usize], limit: usize) {
    let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
    while total(widths) > limit {
        let Some((widest, &w)) = widths.iter().enumerate().max_by_key(|(_, w)| **w) else { return };
        if w <= NARROWEST {
            return;
        }
        let second = widths.iter().enumerate().filter(|(i, _)| *i != widest).map(|(_, w)| *w);
        let excess = total(widths) - limit;
        // Down to the next widest, or by the excess, whichever is less: columns shrink evenly.
        let step = (w - second.max().unwrap_or(0).max(NARROWEST)).clamp(1, excess);
        widths[widest] = w - step;
    }
}

/// `text` in at most `width` characters, ending in `…` when it was cut.
pub(super) fn cut(text: &str, width: usize) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= width {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown: String = text.chars().take(width.saturating_sub(1)).collect();
    shown.push('…');
    std::borrow::Cow::Owned(shown)
}

#[cfg(test)]
mod columns_tests {
    #[test]
    fn a_narrow_terminal_keeps_the_leading_columns() {
        assert_eq!(super::columns_that_fit(&[5, 10, 10, 10], 100), 4);
        // 5 + 2 + 6 + 2 + 6 = 21: the fourth column does not fit in 22.
        assert_eq!(super::columns_that_fit(&[5, 10, 10, 10], 22), 3);
        assert_eq!(super::columns_that_fit(&[50], 3), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(rows: &[Vec<String>], width: Option<usize>) -> String {
        let mut out = Vec::new();
        write(&mut out, &["PID", "PROCESS", "ENDPOINT"], rows, width).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rows_fit_the_width_by_cutting_the_widest_column() {
        let long = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xmx4g -jar /srv/app/service.jar";
        let rows = vec![vec!["1234".into(), long.into(), "10.0.0.1:443".into()]];
        let free = render(&rows, None);
        assert!(free.contains(long));
        let fitted = render(&rows, Some(50));
        assert!(fitted.lines().all(|l| l.chars().count() <= 50), "{fitted}");
        assert!(fitted.contains('…') && fitted.contains("10.0.0.1:443"), "{fitted}");
    }

    #[test]
    fn a_width_too_small_for_all_columns_still_shows_each() {
        let rows = vec![vec!["1".into(), "bash".into(), "127.0.0.1:4444".into()]];
        let out = render(&rows, Some(5));
        assert!(out.lines().nth(1).unwrap().starts_with("1    "), "{out}");
    }
}
