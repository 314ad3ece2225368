//! Reports: a self-contained HTML page (inline SVG charts, no script, no network) and a
//! Markdown summary, for one run or two side by side.
//!
//! # Layout
//! - [`Written`]: files written by [`write_report`] or [`write_compare`].
//! - [`write_report`]: writes `report.html` and `summary.md` for one run into `dir`.
//! - [`write_compare`]: writes `compare.html` and `compare.md` for two runs into `dir`.
//! - [`write_rehearsal`]: writes `rehearsal.html` and `rehearsal.md` for a peak rehearsal.

pub mod bureau;
pub mod charts;
mod html;
mod markdown;
mod rehearsal;
pub mod steps;

use std::path::{Path, PathBuf};

use crate::Error;
use crate::results::Results;

pub use html::{compare_html, report_html};
pub use markdown::{compare_markdown, summary_markdown};
pub use rehearsal::{rehearsal_html, rehearsal_markdown};

/// Files written by [`write_report`] or [`write_compare`].
#[derive(Debug, Clone)]
pub struct Written {
    /// The HTML page.
    pub html: PathBuf,
    /// The Markdown summary.
    pub markdown: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Writes `report.html` and `summary.md` for one run into `dir`.
pub fn write_report(r: &Results, dir: &Path) -> Result<Written, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let html = dir.join("report.html");
    let markdown = dir.join("summary.md");
    write(&html, &report_html(r)?)?;
    write(&markdown, &summary_markdown(r))?;
    Ok(Written { html, markdown })
}

/// Writes `compare.html` and `compare.md` for two runs into `dir`.
pub fn write_compare(a: &Results, b: &Results, dir: &Path) -> Result<Written, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let html = dir.join("compare.html");
    let markdown = dir.join("compare.md");
    write(&html, &compare_html(a, b)?)?;
    write(&markdown, &compare_markdown(a, b))?;
    Ok(Written { html, markdown })
}

/// Writes `rehearsal.html` and `rehearsal.md` for a peak rehearsal into `dir`.
pub fn write_rehearsal(r: &crate::rehearse::Rehearsal, dir: &Path) -> Result<Written, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let html = dir.join("rehearsal.html");
    let markdown = dir.join("rehearsal.md");
    write(&html, &rehearsal_html(r)?)?;
    write(&markdown, &rehearsal_markdown(r))?;
    Ok(Written { html, markdown })
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}
