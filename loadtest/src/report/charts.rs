//! The charts, drawn with plotters into SVG strings (inline in the HTML, no network needed).

use plotters::chart::SeriesAnno;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
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

/// The colour of a fault's line.
const FAULT: RGBColor = RGBColor(214, 39, 40);

/// The chart area every chart draws on: seconds on x, one linear quantity on y.
pub(super) type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A drawing error; plotters' errors carry the backend's, so they are boxed here and named by
/// chart in [`svg`].
pub(super) type DrawError = Box<dyn std::error::Error + Send + Sync>;

/// What drawing returns.
pub(super) type Drawn = Result<(), DrawError>;

/// The frame every chart shares (white ground, caption, labelled mesh over
/// `0..x_max` × `0..y_max`), with `draw` filling it in and answering where the legend goes
/// (`None`: no legend); the SVG as a string.
pub(super) fn svg(
    name: &'static str,
    caption: &str,
    y_desc: &str,
    (x_max, y_max): (f64, f64),
    draw: impl FnOnce(
        &DrawingArea<SVGBackend<'_>, Shift>,
        &mut Chart<'_, '_>,
    ) -> Result<Option<SeriesLabelPosition>, DrawError>,
) -> Result<String, Error> {
    let mut out = String::new();
    let drawn: Drawn = (|| {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(y_desc)
            .draw()?;
        if let Some(corner) = draw(&root, &mut chart)? {
            chart
                .configure_series_labels()
                .position(corner)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    })();
    drawn.map_err(|e| Error::Chart {
        chart: name,
        problem: e.to_string(),
    })?;
    Ok(out)
}

/// A named line, two pixels wide, with its legend entry.
pub(super) fn line(
    chart: &mut Chart<'_, '_>,
    name: impl Into<String>,
    colour: RGBColor,
    pts: impl IntoIterator<Item = (f64, f64)>,
) -> Drawn {
    chart
        .draw_series(LineSeries::new(pts, colour.stroke_width(2)))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    Ok(())
}

/// The forced peak windows, shaded to the top of the chart; the series, to name in the legend.
fn shade_windows<'c, 'a, 'b>(
    chart: &'c mut Chart<'a, 'b>,
    r: &Results,
    y_max: f64,
    shade: ShapeStyle,
) -> Result<&'c mut SeriesAnno<'a, SVGBackend<'b>>, DrawingAreaErrorKind<std::io::Error>> {
    chart.draw_series(
        r.windows
            .iter()
            .map(|w| Rectangle::new([(w.start_s, 0.0), (w.end_s, y_max)], shade)),
    )
}

/// A vertical line at each fault (`--fault`).
fn fault_lines(chart: &mut Chart<'_, '_>, r: &Results, y_max: f64) -> Drawn {
    chart.draw_series(
        r.faults
            .iter()
            .map(|f| PathElement::new(vec![(f.at_s, 0.0), (f.at_s, y_max)], FAULT.stroke_width(2))),
    )?;
    Ok(())
}

/// Offered load, sent, goodput and approvals per second, the peak window shaded.
pub fn offered_vs_goodput(r: &Results, s: &Scale) -> Result<String, Error> {
    let y_max = s.rate;
    let frame = (s.seconds, y_max);
    svg(
        "offered",
        "Offered load vs goodput",
        "requests / s",
        frame,
        |_, chart| {
            shade_windows(chart, r, y_max, WINDOW_SHADE.filled())?
                .label("peak window forced")
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], WINDOW_SHADE.filled())
                });
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
                line(chart, name, colour, pts)?;
            }
            // Phase boundaries, named at the top.
            let grey = RGBColor(120, 120, 120);
            chart.draw_series(r.phases.iter().map(|p| {
                PathElement::new(
                    vec![(p.start_s, 0.0), (p.start_s, y_max)],
                    grey.stroke_width(1),
                )
            }))?;
            chart.draw_series(r.phases.iter().map(|p| {
                Text::new(
                    format!(" {}", p.name),
                    (p.start_s, y_max),
                    ("sans-serif", 12).into_font().color(&grey),
                )
            }))?;
            // Faults, named at the bottom.
            fault_lines(chart, r, y_max)?;
            chart.draw_series(r.faults.iter().map(|f| {
                Text::new(
                    format!(" {}", f.label()),
                    (f.at_s, y_max * 0.08),
                    ("sans-serif", 12).into_font().color(&FAULT),
                )
            }))?;
            Ok(Some(SeriesLabelPosition::UpperRight))
        },
    )
}

/// Refusals per second stacked by true cause.
pub fn refusals_by_cause(r: &Results, s: &Scale) -> Result<String, Error> {
    let causes: Vec<Cause> = Cause::ALL
        .iter()
        .copied()
        .filter(|c| r.seconds.iter().any(|x| x.refusals.contains_key(c)))
        .collect();
    let y_max = s.refusals;
    let frame = (s.seconds, y_max);
    let caption = "Refusals by true cause (stacked)";
    svg("refusals", caption, "refusals / s", frame, |root, chart| {
        shade_windows(chart, r, y_max, WINDOW_SHADE.mix(0.5).filled())?;
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
            chart
                .draw_series(AreaSeries::new(pts, 0.0, colour.mix(0.85)).border_style(colour))?
                .label(causes[k].as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], colour.filled())
                });
        }
        fault_lines(chart, r, y_max)?;
        if causes.is_empty() {
            root.draw(&Text::new(
                "no refusals",
                (W as i32 / 2 - 40, H as i32 / 2),
                ("sans-serif", 16),
            ))?;
            Ok(None)
        } else {
            Ok(Some(SeriesLabelPosition::UpperRight))
        }
    })
}

/// Latency percentiles per second (from intended send time).
pub fn latency_over_time(r: &Results, s: &Scale) -> Result<String, Error> {
    let y_max = s.latency;
    let frame = (s.seconds, y_max);
    let caption = "Latency percentiles (from intended send time)";
    svg("latency", caption, "ms", frame, |_, chart| {
        shade_windows(chart, r, y_max, WINDOW_SHADE.mix(0.5).filled())?;
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
            line(chart, name, colour, pts)?;
        }
        Ok(Some(SeriesLabelPosition::UpperLeft))
    })
}
