//! The peak rehearsal's report ([`crate::rehearse`]): the comparison of the live run (A) and
//! the candidate's (B), led by what the candidate does to good users: refused, by cause, in
//! distinct users and in journeys.

use std::fmt::Write as _;

use super::html::{compare_page, esc};
use super::markdown::compare_markdown_led;
use crate::Error;
use crate::classify::Cause;
use crate::rehearse::Rehearsal;
use crate::results::Results;

/// One row: a cause, and per side distinct good users and journeys refused for it.
struct Row {
    cause: &'static str,
    live: (u64, u64),
    candidate: (u64, u64),
}

/// Every cause either side refused a good user for, in report order, then any cause.
fn rows(live: &Results, candidate: &Results) -> Vec<Row> {
    let side = |r: &Results, c: &Cause| {
        (
            r.totals
                .good_refused_users_by_cause
                .get(c)
                .copied()
                .unwrap_or(0),
            r.totals.good_refused_by_cause.get(c).copied().unwrap_or(0),
        )
    };
    let mut rows: Vec<Row> = Cause::ALL
        .iter()
        .filter(|c| {
            [live, candidate]
                .iter()
                .any(|r| r.totals.good_refused_by_cause.contains_key(*c))
        })
        .map(|c| Row {
            cause: c.as_str(),
            live: side(live, c),
            candidate: side(candidate, c),
        })
        .collect();
    let any = |r: &Results| {
        (
            r.totals.good_refused_users,
            r.totals.good_refused_by_cause.values().sum(),
        )
    };
    rows.push(Row {
        cause: "any cause",
        live: any(live),
        candidate: any(candidate),
    });
    rows
}

fn signed(a: u64, b: u64) -> String {
    let d = i128::from(b) - i128::from(a);
    if d > 0 {
        format!("+{d}")
    } else {
        d.to_string()
    }
}

impl Row {
    /// The row's cells, in the tables' column order.
    fn cells(&self) -> [String; 6] {
        [
            self.cause.to_owned(),
            self.live.0.to_string(),
            self.live.1.to_string(),
            self.candidate.0.to_string(),
            self.candidate.1.to_string(),
            signed(self.live.0, self.candidate.0),
        ]
    }
}

/// How the two runs were made, and whether they were offered the same load.
fn method(r: &Rehearsal) -> Vec<String> {
    let (l, c) = (&r.live, &r.candidate);
    let mut lines = vec![
        format!(
            "A is the live policy, B the candidate bundle {}. The same traffic was replayed \
             against each, one after the other, on a fresh in-process gateway: scenario `{}`, \
             seed {}, {} good users of {}.",
            r.bundle.display(),
            l.scenario.name,
            l.scenario.seed,
            l.totals.good_users,
            l.populations.iter().map(|p| p.users).sum::<usize>()
        ),
        format!(
            "Journeys offered: A {}, B {}; the generator kept up: A {}, B {}.",
            l.generator.journeys, c.generator.journeys, l.generator.kept_up, c.generator.kept_up
        ),
    ];
    if l.generator.journeys != c.generator.journeys || !l.generator.kept_up || !c.generator.kept_up
    {
        lines.push(
            "The two sides were NOT offered exactly the same load: compare rates, not counts."
                .into(),
        );
    }
    lines
}

/// The rehearsal page: its section, then the comparison of both runs.
pub fn rehearsal_html(r: &Rehearsal) -> Result<String, Error> {
    let mut s = String::from(
        "<h2 id=\"rehearsal\">Peak rehearsal: good users refused, live (A) vs candidate (B)</h2>",
    );
    for line in method(r) {
        let _ = write!(s, "<p>{}</p>", esc(&line));
    }
    s.push_str(
        "<table id=\"rehearsal-causes\"><tr><th>cause</th><th>A users</th><th>A journeys</th>\
         <th>B users</th><th>B journeys</th><th>change in users</th></tr>",
    );
    for row in rows(&r.live, &r.candidate) {
        let class = match row.candidate.0.cmp(&row.live.0) {
            std::cmp::Ordering::Greater => " class=\"bad\"",
            std::cmp::Ordering::Less => " class=\"ok\"",
            std::cmp::Ordering::Equal => "",
        };
        let [cause, cells @ .., change] = row.cells();
        s.push_str("<tr><td>");
        s.push_str(&cause);
        for c in cells {
            let _ = write!(s, "</td><td>{c}");
        }
        let _ = write!(s, "</td><td{class}>{change}</td></tr>");
    }
    s.push_str(
        "</table><p>Users: distinct good users with at least one journey refused for the cause \
         (a user refused for two causes counts in both; \"any cause\" counts each once). \
         Journeys: refused good-user journeys, by the cause of their last answer.</p>",
    );
    compare_page(&r.live, &r.candidate, "Peak rehearsal", &s)
}

/// The rehearsal's Markdown.
pub fn rehearsal_markdown(r: &Rehearsal) -> String {
    let mut s = String::new();
    for line in method(r) {
        let _ = writeln!(s, "{line}\n");
    }
    s.push_str(
        "| good users refused, by cause | A users | A journeys | B users | B journeys | change in users |\n|---|--:|--:|--:|--:|--:|\n",
    );
    for row in rows(&r.live, &r.candidate) {
        let _ = writeln!(s, "| {} |", row.cells().join(" | "));
    }
    s.push('\n');
    compare_markdown_led(&r.live, &r.candidate, "peak rehearsal", &s)
}
