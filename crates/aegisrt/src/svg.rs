//! The memory plan as an SVG picture: time steps across, byte offsets up, one rectangle per
//! tensor, the peak and the lower bound as labelled horizontal lines, axes with round ticks
//! and a legend.
//!
//! A tensor is drawn over the columns of the steps it is alive at, except at a handover: an
//! in-place pair (a share hint: the step's output takes its input's bytes) and a nest (a
//! Concat's part stored inside its output, whose bytes the output owns from the Concat's
//! step on). There the first tensor ends and the second starts in the middle of the step, so
//! the rectangles meet instead of overlapping. Any other overlap in the picture would be a
//! planner bug.

use std::collections::HashMap;
use std::fmt::Write;

use aegis_exec::ExecutionGraph;

const W: f64 = 1400.0;
const H: f64 = 900.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 300.0;
const TOP: f64 = 80.0;
const BOTTOM: f64 = 80.0;
const PEAK: &str = "#d62728";
const BOUND: &str = "#2ca02c";

/// A round tick step at least `raw`: 1, 2, 2.5 or 5 times a power of ten.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// The binary unit the axis is labelled in, by the largest value.
fn unit_for(bytes: f64) -> (f64, &'static str) {
    match bytes {
        b if b >= (1u64 << 30) as f64 => ((1u64 << 30) as f64, "GiB"),
        b if b >= (1u64 << 20) as f64 => ((1u64 << 20) as f64, "MiB"),
        b if b >= 1024.0 => (1024.0, "KiB"),
        _ => (1.0, "B"),
    }
}

/// `v` with as few decimals as it needs (at most 2).
fn short(v: f64) -> String {
    let t = format!("{v:.2}");
    t.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Draws `graph`'s plan.
pub fn plan_svg(graph: &ExecutionGraph, title: &str) -> String {
    let plan = graph.plan();
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let operators = graph.topological_order().len();
    // Graph outputs live until `num_steps`, one past the last operator.
    let steps = plan
        .tensors
        .iter()
        .map(|l| l.last_step + 1)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let top_bytes = plan.peak_bytes.max(plan.lower_bound_bytes).max(1) as f64;
    let (unit, unit_name) = unit_for(top_bytes);
    let ystep = nice_step(top_bytes / unit / 5.0) * unit;
    // Headroom above the lines for their labels.
    let ymax = ((top_bytes * 1.06) / ystep).ceil() * ystep;
    let x = |s: f64| LEFT + s / steps * pw;
    let y = |b: f64| TOP + ph - b / ymax * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="30" font-size="18" font-weight="bold">{}</text>"#,
        esc(&format!("Memory plan: {title}"))
    );
    let saving = if plan.naive_bytes == 0 {
        0.0
    } else {
        100.0 * (1.0 - plan.peak_bytes as f64 / plan.naive_bytes as f64)
    };
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="54" fill="#444">{}</text>"##,
        esc(&format!(
            "{} tensors over {operators} operator steps, strategy {}, {} in-place pairs, {} parts in place: peak {} ({saving:.1}% below the naive sum {}), lower bound {}, peak/bound {:.3}",
            plan.tensors.len(),
            plan.strategy,
            plan.shared.len(),
            plan.nested.len(),
            aegis_context::fmt_bytes(plan.peak_bytes),
            aegis_context::fmt_bytes(plan.naive_bytes),
            aegis_context::fmt_bytes(plan.lower_bound_bytes),
            plan.ratio_to_bound()
        ))
    );
    // Horizontal grid with round byte ticks.
    let mut b = 0.0;
    while b <= ymax + ystep * 1e-6 {
        let yy = y(b);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{} {unit_name}</text>"##,
            LEFT + pw,
            LEFT - 8.0,
            yy + 4.0,
            short(b / unit)
        );
        b += ystep;
    }
    // Round step ticks.
    let xstep = nice_step(steps / 12.0).max(1.0).round();
    let mut st = 0.0;
    while st <= steps + 1e-9 {
        let xx = x(st);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#666"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 6.0,
            TOP + ph + 22.0,
            st as u64
        );
        st += xstep;
    }
    // In-place handovers: the input ends, and the output starts, mid-step.
    let mut ends_mid: HashMap<usize, f64> = HashMap::new();
    let mut starts_mid: HashMap<usize, f64> = HashMap::new();
    for hint in &plan.shared {
        if let Some(input) = plan.lifetime_of(hint.input) {
            let at = input.last_step as f64 + 0.5;
            ends_mid.insert(hint.input, at);
            starts_mid.insert(hint.output, at);
        }
    }
    // A part hands its bytes to its whole when the Concat writes the whole (a part still
    // read later is drawn up to there: from then on the whole's rectangle shows them).
    for nest in &plan.nested {
        if let Some(outer) = plan.lifetime_of(nest.outer) {
            let at = outer.first_step as f64 + 0.5;
            let end = ends_mid.entry(nest.inner).or_insert(at);
            *end = end.min(at);
            starts_mid.insert(nest.outer, at);
        }
    }
    let _ = writeln!(s, r##"<g stroke="#333" stroke-width="0.5">"##);
    for l in &plan.tensors {
        let Some(off) = plan.offset_of(l.tensor) else {
            continue;
        };
        let s0 = starts_mid
            .get(&l.tensor)
            .copied()
            .unwrap_or(l.first_step as f64);
        let s1 = ends_mid
            .get(&l.tensor)
            .copied()
            .unwrap_or((l.last_step + 1) as f64);
        let (x0, x1) = (x(s0), x(s1));
        let (y0, y1) = (y((off + l.size_bytes) as f64), y(off as f64));
        let name = graph
            .tensors()
            .get(l.tensor)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| format!("t{}", l.tensor));
        let hue = (l.tensor as u64).wrapping_mul(2_654_435_761) % 360;
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.2}" y="{y0:.2}" width="{:.2}" height="{:.2}" fill="hsl({hue},60%,72%)"><title>{}</title></rect>"#,
            (x1 - x0).max(0.5),
            (y1 - y0).max(0.5),
            esc(&format!(
                "{name}: {} at offset {off}, steps {}..={}",
                aegis_context::fmt_bytes(l.size_bytes),
                l.first_step,
                l.last_step
            ))
        );
    }
    let _ = writeln!(s, "</g>");
    // Peak and lower bound: dashes interleaved so both stay visible when they coincide;
    // the peak's label sits above its line, the bound's below its own.
    let (yp, yb) = (y(plan.peak_bytes as f64), y(plan.lower_bound_bytes as f64));
    let xr = LEFT + pw - 6.0;
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{yp:.1}" x2="{:.1}" y2="{yp:.1}" stroke="{PEAK}" stroke-width="2" stroke-dasharray="10,10"/>
<line x1="{LEFT}" y1="{yb:.1}" x2="{:.1}" y2="{yb:.1}" stroke="{BOUND}" stroke-width="2" stroke-dasharray="10,10" stroke-dashoffset="10"/>
<g font-weight="bold" text-anchor="end" paint-order="stroke" stroke="white" stroke-width="4">
<text x="{xr:.1}" y="{:.1}" fill="{PEAK}">peak {}</text>
<text x="{xr:.1}" y="{:.1}" fill="{BOUND}">lower bound {}</text></g>"##,
        LEFT + pw,
        LEFT + pw,
        yp - 6.0,
        esc(&aegis_context::fmt_bytes(plan.peak_bytes)),
        yb + 16.0,
        esc(&aegis_context::fmt_bytes(plan.lower_bound_bytes)),
    );
    // Axes.
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="black"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"##,
        TOP + ph,
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time step (operators in execution order)</text>"#,
        LEFT + pw / 2.0,
        H - 30.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(28,{:.1}) rotate(-90)" text-anchor="middle">byte offset in the arena</text>"#,
        TOP + ph / 2.0
    );
    // Legend.
    let lx = LEFT + pw + 20.0;
    let lw = RIGHT - 35.0;
    let row = |i: f64| TOP + 44.0 + 26.0 * i;
    let _ = writeln!(
        s,
        r##"<g><rect x="{lx}" y="{TOP}" width="{lw}" height="{:.1}" fill="white" stroke="#999"/>
<text x="{:.1}" y="{:.1}" font-weight="bold">Legend</text>
<rect x="{:.1}" y="{:.1}" width="24" height="12" fill="hsl(200,60%,72%)" stroke="#333" stroke-width="0.5"/><text x="{:.1}" y="{:.1}">a tensor: steps alive × its bytes</text>
<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="hsl(30,60%,72%)" stroke="#333" stroke-width="0.5"/><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="hsl(280,60%,72%)" stroke="#333" stroke-width="0.5"/><text x="{:.1}" y="{:.1}">in place: meet mid-step</text>
<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{PEAK}" stroke-width="2" stroke-dasharray="10,10"/><text x="{:.1}" y="{:.1}">peak (arena size)</text>
<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{BOUND}" stroke-width="2" stroke-dasharray="10,10"/><text x="{:.1}" y="{:.1}">lower bound (most live bytes)</text></g>"##,
        26.0 * 4.0 + 30.0,
        lx + 10.0,
        TOP + 20.0,
        lx + 10.0,
        row(0.0) - 10.0,
        lx + 42.0,
        row(0.0),
        lx + 10.0,
        row(1.0) - 10.0,
        lx + 22.0,
        row(1.0) - 10.0,
        lx + 42.0,
        row(1.0),
        lx + 8.0,
        row(2.0) - 4.0,
        lx + 36.0,
        row(2.0) - 4.0,
        lx + 42.0,
        row(2.0),
        lx + 8.0,
        row(3.0) - 4.0,
        lx + 36.0,
        row(3.0) - 4.0,
        lx + 42.0,
        row(3.0),
    );
    s.push_str("</svg>\n");
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(2.2), 2.5);
        assert_eq!(nice_step(40.0), 50.0);
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(3.0), "3");
        assert_eq!(unit_for(5e6).1, "MiB");
    }
}
