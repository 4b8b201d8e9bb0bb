//! The figures of `docs/simulation.md`, drawn as SVG (plotters' SVG backend).
//!
//! Owns the sweeps behind each figure and their drawing; each figure's
//! numbers are also printed as one JSON line, so the document's tables and
//! the pictures come from the same runs.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;
use tinychain_sim::experiment::{self, Propagation, Summary};
use tinychain_sim::net::LinkModel;

const MB: u64 = 1_000_000;
/// Nodes of the stale-rate sweep (18 runs of 30 blocks each).
const STALE_NODES: usize = 100;

/// Writes every figure into `out`.
#[allow(clippy::print_stdout)]
pub(crate) fn write_all(out: &Path, nodes: usize) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let runs = [("empty", 0, true), ("1 MB, compact", MB, true), ("1 MB, whole", MB, false)];
    let mut summaries = Vec::new();
    for (name, bytes, compact) in runs {
        let mut p = Propagation::new(nodes, 7);
        p.block_bytes = bytes;
        p.compact = compact;
        let s = experiment::propagation(&p);
        println!("{}", serde_json::json!({ "figure": "propagation", "run": name, "summary": s }));
        summaries.push((name, s));
    }
    cdf(&out.join("propagation-cdf.svg"), &summaries)?;
    bandwidth(&out.join("bandwidth.svg"), &summaries)?;
    let mut stale = Vec::new();
    for (name, bytes, compact) in
        [("empty", 0, true), ("1 MB, whole", MB, false), ("8 MB, whole", 8 * MB, false)]
    {
        let mut points = Vec::new();
        for interval in [10.0, 30.0, 60.0, 120.0, 300.0, 600.0] {
            let mut p = Propagation::new(nodes.min(STALE_NODES), 7);
            p.block_bytes = bytes;
            p.compact = compact;
            p.interval = interval;
            p.blocks = 30;
            let s = experiment::propagation(&p);
            println!(
                "{}",
                serde_json::json!({ "figure": "stale", "run": name, "interval_s": interval, "blocks": s.blocks, "stale": s.stale, "stale_rate": s.stale_rate })
            );
            points.push((interval, s.stale_rate));
        }
        stale.push((name, points));
    }
    stale_rate(&out.join("stale-rate.svg"), &stale)?;
    let mut converge = Vec::new();
    for apart in [30.0, 60.0, 120.0, 300.0, 600.0] {
        let t = experiment::convergence(nodes, 7, apart, LinkModel::internet());
        println!(
            "{}",
            serde_json::json!({ "figure": "convergence", "apart_s": apart, "converged_after_s": t })
        );
        converge.push((apart, t));
    }
    convergence(&out.join("convergence.svg"), &converge)?;
    Ok(())
}

fn cdf(path: &Path, runs: &[(&str, Summary)]) -> Result<()> {
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = runs.iter().map(|(_, s)| experiment::quantile(&s.delays, 0.999)).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Block propagation: delay to each node (CDF)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max * 1.05, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("seconds after the block was found")
        .y_desc("fraction of (block, node) pairs")
        .draw()?;
    for (i, (name, s)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).mix(0.9);
        let n = s.delays.len().max(1) as f64;
        let points = s.delays.iter().enumerate().map(|(k, d)| (*d, (k + 1) as f64 / n));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(format!("{name} (p50 {:.2} s, p95 {:.2} s)", s.delay_p50_s, s.delay_p95_s))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn bandwidth(path: &Path, runs: &[(&str, Summary)]) -> Result<()> {
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = runs.iter().map(|(_, s)| s.bytes_per_node_s).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Mean upload per node (blocks every 600 s)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0..runs.len(), 0.0..max * 1.15)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(runs.len())
        .x_label_formatter(&|i| runs.get(*i).map_or(String::new(), |(n, _)| (*n).to_owned()))
        .y_desc("bytes per second")
        .draw()?;
    for (i, (_, s)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).filled();
        chart.draw_series([Rectangle::new([(i, 0.0), (i + 1, s.bytes_per_node_s)], color)])?;
    }
    root.present()?;
    Ok(())
}

fn stale_rate(path: &Path, runs: &[(&str, Vec<(f64, f64)>)]) -> Result<()> {
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = runs.iter().flat_map(|(_, p)| p.iter().map(|(_, r)| *r)).fold(0.05, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Stale blocks against block interval", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((10.0..600.0).log_scale(), 0.0..max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("mean block interval, s (log)")
        .y_desc("stale blocks / blocks mined")
        .draw()?;
    for (i, (name, points)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).mix(0.9);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

fn convergence(path: &Path, points: &[(f64, f64)]) -> Result<()> {
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = points.iter().map(|(_, t)| *t).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Time to one tip after a partition heals", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..650.0, 0.0..max * 1.2)?;
    chart
        .configure_mesh()
        .x_desc("seconds the two halves mined apart")
        .y_desc("seconds to converge")
        .draw()?;
    let color = Palette99::pick(0);
    chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    root.present()?;
    Ok(())
}
