//! The memory plan as an SVG picture: time steps across, byte offsets up, one rectangle per
//! tensor, the peak and the lower bound as horizontal lines, axes and a legend.

use std::fmt::Write;

use aegis_exec::ExecutionGraph;

/// Draws `graph`'s plan.
pub fn plan_svg(graph: &ExecutionGraph, title: &str) -> String {
    let plan = graph.plan();
    let (w, h) = (1400.0_f64, 900.0_f64);
    let (left, right, top, bottom) = (110.0, 290.0, 70.0, 80.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let steps = plan
        .tensors
        .iter()
        .map(|l| l.last_step + 1)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let ymax = (plan.peak_bytes.max(plan.lower_bound_bytes).max(1) as f64) * 1.08;
    let x = |s: f64| left + s / steps * pw;
    let y = |b: f64| top + ph - b / ymax * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="30" font-size="18" font-weight="bold">{}</text>"#,
        left,
        esc(&format!("Memory plan: {title}"))
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="52" fill="#444">{}</text>"##,
        left,
        esc(&format!(
            "{} tensors, {} steps, strategy {}: peak {}, lower bound {}, naive sum {} (peak/bound {:.3})",
            plan.tensors.len(),
            steps as u64,
            plan.strategy,
            aegis_context::fmt_bytes(plan.peak_bytes),
            aegis_context::fmt_bytes(plan.lower_bound_bytes),
            aegis_context::fmt_bytes(plan.naive_bytes),
            plan.ratio_to_bound()
        ))
    );
    // Grid and ticks.
    for i in 0..=5 {
        let b = ymax / 1.08 * i as f64 / 5.0;
        let yy = y(b);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 8.0,
            yy + 4.0,
            esc(&aegis_context::fmt_bytes(b as u64))
        );
    }
    let xticks = 10.0_f64.min(steps);
    for i in 0..=(xticks as usize) {
        let st = (steps * i as f64 / xticks).round();
        let xx = x(st);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#999"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + ph,
            top + ph + 6.0,
            top + ph + 22.0,
            st as u64
        );
    }
    // Tensors.
    let _ = writeln!(s, r##"<g stroke="#333" stroke-width="0.4">"##);
    for l in &plan.tensors {
        let Some(off) = plan.offset_of(l.tensor) else {
            continue;
        };
        let x0 = x(l.first_step as f64);
        let x1 = x((l.last_step + 1) as f64);
        let y0 = y((off + l.size_bytes) as f64);
        let y1 = y(off as f64);
        let name = graph
            .tensors()
            .get(l.tensor)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| format!("t{}", l.tensor));
        let hue = (l.tensor as u64).wrapping_mul(2_654_435_761) % 360;
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.2}" y="{y0:.2}" width="{:.2}" height="{:.2}" fill="hsl({hue},60%,70%)"><title>{}</title></rect>"#,
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
    // Peak and bound.
    let yp = y(plan.peak_bytes as f64);
    let yb = y(plan.lower_bound_bytes as f64);
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{yp:.1}" x2="{:.1}" y2="{yp:.1}" stroke="#d62728" stroke-width="2" stroke-dasharray="8,4"/>"##,
        left + pw
    );
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{yb:.1}" x2="{:.1}" y2="{yb:.1}" stroke="#2ca02c" stroke-width="2" stroke-dasharray="3,3"/>"##,
        left + pw
    );
    // Axes.
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{:.1}" stroke="black"/><line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"##,
        top + ph,
        top + ph,
        left + pw,
        top + ph
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time step (operator order)</text>"#,
        left + pw / 2.0,
        h - 30.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(30,{:.1}) rotate(-90)" text-anchor="middle">byte offset in the arena</text>"#,
        top + ph / 2.0
    );
    // Legend.
    let lx = left + pw + 20.0;
    let _ = writeln!(
        s,
        r##"<g><rect x="{lx}" y="{top}" width="260" height="118" fill="white" stroke="#999"/>
<text x="{}" y="{}" font-weight="bold">Legend</text>
<rect x="{}" y="{}" width="24" height="12" fill="hsl(200,60%,70%)" stroke="#333" stroke-width="0.4"/><text x="{}" y="{}">one tensor (alive steps × bytes)</text>
<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#d62728" stroke-width="2" stroke-dasharray="8,4"/><text x="{}" y="{}">peak {}</text>
<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#2ca02c" stroke-width="2" stroke-dasharray="3,3"/><text x="{}" y="{}">lower bound {}</text></g>"##,
        lx + 10.0,
        top + 20.0,
        lx + 10.0,
        top + 34.0,
        lx + 40.0,
        top + 45.0,
        lx + 10.0,
        top + 70.0,
        lx + 34.0,
        top + 70.0,
        lx + 40.0,
        top + 74.0,
        esc(&aegis_context::fmt_bytes(plan.peak_bytes)),
        lx + 10.0,
        top + 98.0,
        lx + 34.0,
        top + 98.0,
        lx + 40.0,
        top + 102.0,
        esc(&aegis_context::fmt_bytes(plan.lower_bound_bytes)),
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
