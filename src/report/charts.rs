//! The report's charts, drawn by plotters into SVG strings (no fonts or files needed).

use std::collections::BTreeMap;

use plotters::prelude::*;

use super::{Day, ReportError, SEVERITIES};

/// Colours of the severities, in [`SEVERITIES`] order.
const SEVERITY_COLOURS: [RGBColor; 4] = [
    RGBColor(127, 29, 29),
    RGBColor(220, 38, 38),
    RGBColor(217, 119, 6),
    RGBColor(37, 99, 235),
];

/// Colours of the decision outcomes: approved, denied, expired, pending.
const OUTCOME_COLOURS: [RGBColor; 4] = [
    RGBColor(22, 163, 74),
    RGBColor(100, 116, 139),
    RGBColor(202, 138, 4),
    RGBColor(37, 99, 235),
];

fn chart_error(e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart(e.to_string())
}

/// Open findings per severity at the end of each day, as an SVG line chart.
pub fn open_over_time(days: &[Day]) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let n = i32::try_from(days.len()).unwrap_or(i32::MAX).max(1);
        let top = days
            .iter()
            .flat_map(|d| d.open.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1);
        let label = |i: &i32| {
            usize::try_from(*i)
                .ok()
                .and_then(|i| days.get(i))
                .map(|d| d.day.format("%b %d").to_string())
                .unwrap_or_default()
        };
        let mut chart = ChartBuilder::on(&root)
            .caption("Open findings by severity", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(0..(n - 1).max(1), 0..top + top / 10 + 1)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&label)
            .y_desc("open")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(chart_error)?;
        for (s, colour) in SEVERITIES.iter().zip(SEVERITY_COLOURS) {
            let i = super::severity_index(*s);
            let points: Vec<(i32, i64)> = days
                .iter()
                .enumerate()
                .map(|(x, d)| (i32::try_from(x).unwrap_or(i32::MAX), d.open[i]))
                .collect();
            // Dots as well as the line, so a single day still shows.
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                .map_err(chart_error)?;
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(chart_error)?
                .label(s.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// Remediations by outcome, as an SVG bar chart.
pub fn decisions(counts: &BTreeMap<&'static str, u64>) -> Result<String, ReportError> {
    let outcomes = ["approved", "denied", "expired", "pending"];
    let values: Vec<u64> = outcomes
        .iter()
        .map(|o| counts.get(o).copied().unwrap_or(0))
        .collect();
    let top = values.iter().copied().max().unwrap_or(0).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (420, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Remediations by outcome", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d((0u32..3u32).into_segmented(), 0u64..top + top / 8 + 1)
            .map_err(chart_error)?;
        let label = |x: &SegmentValue<u32>| match x {
            SegmentValue::CenterOf(i) => outcomes
                .get(*i as usize)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&label)
            .y_desc("remediations")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(chart_error)?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let i = i as u32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0),
                        (SegmentValue::Exact(i + 1), *v),
                    ],
                    OUTCOME_COLOURS[i as usize].filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}
