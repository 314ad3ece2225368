//! The charts, drawn with plotters into SVG strings (inline in the HTML, no network needed).

use plotters::prelude::*;

use crate::Error;
use crate::classify::Cause;
use crate::results::Results;
use risk_core::Family;

const W: u32 = 920;
const H: u32 = 300;

/// Axis ranges shared by the charts of one report (or of both runs of a comparison).
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Seconds on the x axis.
    pub seconds: f64,
    /// Largest request rate.
    pub rate: f64,
    /// Largest stacked refusal rate.
    pub refusals: f64,
    /// Largest latency, ms.
    pub latency: f64,
}

impl Scale {
    /// Ranges that fit every run given.
    pub fn fitting(runs: &[&Results]) -> Self {
        let mut s = Scale {
            seconds: 1.0,
            rate: 1.0,
            refusals: 1.0,
            latency: 1.0,
        };
        for r in runs {
            s.seconds = s
                .seconds
                .max(r.seconds.len() as f64)
                .max(r.scenario.duration_s);
            for sec in &r.seconds {
                s.rate = s.rate.max(sec.offered as f64).max(sec.sent as f64);
                s.refusals = s.refusals.max(sec.refusals.values().sum::<u64>() as f64);
                s.latency = s.latency.max(sec.latency_ms.p999);
            }
        }
        s.rate *= 1.1;
        s.refusals *= 1.1;
        s.latency *= 1.1;
        s
    }
}

fn err(chart: &'static str) -> impl Fn(String) -> Error {
    move |problem| Error::Chart { chart, problem }
}

/// The colour a cause has in every chart.
pub fn cause_colour(c: Cause) -> RGBColor {
    match c {
        Cause::Coded(Family::Capacity) => RGBColor(214, 39, 40),
        Cause::Coded(Family::RateLimit) => RGBColor(255, 127, 14),
        Cause::Coded(Family::PeakWindow) => RGBColor(188, 160, 20),
        Cause::Coded(Family::Anomaly) => RGBColor(148, 103, 189),
        Cause::Coded(Family::Dependency) => RGBColor(140, 86, 75),
        Cause::Coded(Family::Eligibility) => RGBColor(127, 127, 127),
        Cause::Coded(Family::CreditLine) => RGBColor(23, 190, 207),
        Cause::Unexplained => RGBColor(20, 20, 20),
        Cause::ClientError => RGBColor(227, 119, 194),
        Cause::Coded(Family::Request) => RGBColor(188, 189, 34),
        Cause::Timeout => RGBColor(120, 0, 0),
        Cause::Connection => RGBColor(31, 60, 120),
        Cause::Coded(Family::Contention) => RGBColor(90, 160, 90),
    }
}

const WINDOW_SHADE: RGBColor = RGBColor(255, 214, 170);

macro_rules! try_draw {
    ($chart:literal, $e:expr) => {
        $e.map_err(|e| err($chart)(e.to_string()))?
    };
}

/// The colour of a fault's line.
const FAULT: RGBColor = RGBColor(214, 39, 40);

/// Offered load, sent, goodput and approvals per second, the peak window shaded.
pub fn offered_vs_goodput(r: &Results, s: &Scale) -> Result<String, Error> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        try_draw!("offered", root.fill(&WHITE));
        let mut chart = try_draw!(
            "offered",
            ChartBuilder::on(&root)
                .caption("Offered load vs goodput", ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..s.seconds, 0f64..s.rate)
        );
        try_draw!(
            "offered",
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc("requests / s")
                .draw()
        );
        try_draw!(
            "offered",
            chart.draw_series(r.windows.iter().map(|w| {
                Rectangle::new([(w.start_s, 0.0), (w.end_s, s.rate)], WINDOW_SHADE.filled())
            }))
        )
        .label("peak window forced")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], WINDOW_SHADE.filled()));
        type Field = fn(&crate::results::SecondResult) -> u64;
        let series: [(&str, RGBColor, Field); 4] = [
            ("sent", RGBColor(160, 160, 160), |x| x.sent),
            ("offered", RGBColor(31, 119, 180), |x| x.offered),
            ("goodput (2xx answers)", RGBColor(44, 160, 44), |x| {
                x.goodput
            }),
            ("approved drawdowns", RGBColor(0, 90, 0), |x| x.approved),
        ];
        for (name, colour, f) in series {
            let pts = r.seconds.iter().map(|x| (x.t as f64 + 0.5, f(x) as f64));
            try_draw!(
                "offered",
                chart.draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            )
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        }
        // Phase boundaries, named at the top.
        let grey = RGBColor(120, 120, 120);
        try_draw!(
            "offered",
            chart.draw_series(r.phases.iter().map(|p| {
                PathElement::new(
                    vec![(p.start_s, 0.0), (p.start_s, s.rate)],
                    grey.stroke_width(1),
                )
            }))
        );
        try_draw!(
            "offered",
            chart.draw_series(r.phases.iter().map(|p| {
                Text::new(
                    format!(" {}", p.name),
                    (p.start_s, s.rate),
                    ("sans-serif", 12).into_font().color(&grey),
                )
            }))
        );
        // Faults (`--fault`), named at the bottom.
        try_draw!(
            "offered",
            chart.draw_series(r.faults.iter().map(|f| {
                PathElement::new(vec![(f.at_s, 0.0), (f.at_s, s.rate)], FAULT.stroke_width(2))
            }))
        );
        try_draw!(
            "offered",
            chart.draw_series(r.faults.iter().map(|f| {
                Text::new(
                    format!(" {}", f.label()),
                    (f.at_s, s.rate * 0.08),
                    ("sans-serif", 12).into_font().color(&FAULT),
                )
            }))
        );
        try_draw!(
            "offered",
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
        );
        try_draw!("offered", root.present());
    }
    Ok(out)
}

/// Refusals per second stacked by true cause.
pub fn refusals_by_cause(r: &Results, s: &Scale) -> Result<String, Error> {
    let causes: Vec<Cause> = Cause::ALL
        .iter()
        .copied()
        .filter(|c| r.seconds.iter().any(|x| x.refusals.contains_key(c)))
        .collect();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        try_draw!("refusals", root.fill(&WHITE));
        let mut chart = try_draw!(
            "refusals",
            ChartBuilder::on(&root)
                .caption("Refusals by true cause (stacked)", ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..s.seconds, 0f64..s.refusals)
        );
        try_draw!(
            "refusals",
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc("refusals / s")
                .draw()
        );
        try_draw!(
            "refusals",
            chart.draw_series(r.windows.iter().map(|w| {
                Rectangle::new(
                    [(w.start_s, 0.0), (w.end_s, s.refusals)],
                    WINDOW_SHADE.mix(0.5).filled(),
                )
            }))
        );
        // Draw the tallest stack first so each lower layer paints over it.
        for k in (0..causes.len()).rev() {
            let pts: Vec<(f64, f64)> = r
                .seconds
                .iter()
                .map(|x| {
                    let cum: u64 = causes[..=k]
                        .iter()
                        .map(|c| x.refusals.get(c).copied().unwrap_or(0))
                        .sum();
                    (x.t as f64 + 0.5, cum as f64)
                })
                .collect();
            let colour = cause_colour(causes[k]);
            try_draw!(
                "refusals",
                chart.draw_series(AreaSeries::new(pts, 0.0, colour.mix(0.85)).border_style(colour))
            )
            .label(causes[k].as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], colour.filled()));
        }
        try_draw!(
            "refusals",
            chart.draw_series(r.faults.iter().map(|f| {
                PathElement::new(
                    vec![(f.at_s, 0.0), (f.at_s, s.refusals)],
                    FAULT.stroke_width(2),
                )
            }))
        );
        if causes.is_empty() {
            try_draw!(
                "refusals",
                root.draw(&Text::new(
                    "no refusals",
                    (W as i32 / 2 - 40, H as i32 / 2),
                    ("sans-serif", 16)
                ))
            );
        } else {
            try_draw!(
                "refusals",
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
            );
        }
        try_draw!("refusals", root.present());
    }
    Ok(out)
}

/// Latency percentiles per second (from intended send time).
pub fn latency_over_time(r: &Results, s: &Scale) -> Result<String, Error> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        try_draw!("latency", root.fill(&WHITE));
        let mut chart = try_draw!(
            "latency",
            ChartBuilder::on(&root)
                .caption(
                    "Latency percentiles (from intended send time)",
                    ("sans-serif", 18)
                )
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..s.seconds, 0f64..s.latency)
        );
        try_draw!(
            "latency",
            chart.configure_mesh().x_desc("seconds").y_desc("ms").draw()
        );
        try_draw!(
            "latency",
            chart.draw_series(r.windows.iter().map(|w| {
                Rectangle::new(
                    [(w.start_s, 0.0), (w.end_s, s.latency)],
                    WINDOW_SHADE.mix(0.5).filled(),
                )
            }))
        );
        type Pick = fn(&crate::results::Percentiles) -> f64;
        let series: [(&str, RGBColor, Pick); 4] = [
            ("p50", RGBColor(44, 160, 44), |p| p.p50),
            ("p90", RGBColor(31, 119, 180), |p| p.p90),
            ("p99", RGBColor(255, 127, 14), |p| p.p99),
            ("p99.9", RGBColor(214, 39, 40), |p| p.p999),
        ];
        for (name, colour, f) in series {
            let pts = r
                .seconds
                .iter()
                .filter(|x| !x.completed.is_empty())
                .map(|x| (x.t as f64 + 0.5, f(&x.latency_ms)));
            try_draw!(
                "latency",
                chart.draw_series(LineSeries::new(pts, colour.stroke_width(2)))
            )
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        }
        try_draw!(
            "latency",
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
        );
        try_draw!("latency", root.present());
    }
    Ok(out)
}
