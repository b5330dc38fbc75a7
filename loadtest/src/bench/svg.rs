//! A hand-written SVG plot of the latency sweep: p50 (solid) and p99 (dashed)
//! latency against offered rate, one colour per peer, log-scaled latency axis.

use std::fmt::Write as _;

/// One peer's curve: `(offered rate, p50 µs, p99 µs)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points in increasing rate order.
    pub points: Vec<(f64, f64, f64)>,
}

const W: f64 = 760.0;
const H: f64 = 460.0;
const L: f64 = 70.0;
const R: f64 = 170.0;
const T: f64 = 40.0;
const B: f64 = 50.0;
/// One colour per default peer (eight), so no two series share one.
const COLORS: [&str; 8] = [
    "#444444", "#17becf", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the plot.
pub fn sweep_svg(title: &str, series: &[Series]) -> String {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut xmax, mut ymin, mut ymax) = (1.0f64, f64::MAX, 1.0f64);
    for &(x, p50, p99) in pts {
        xmax = xmax.max(x);
        ymin = ymin.min(p50.max(0.1));
        ymax = ymax.max(p99);
    }
    if ymin == f64::MAX {
        ymin = 1.0;
    }
    let (lo, hi) = (
        ymin.log10().floor(),
        ymax.log10().ceil().max(ymin.log10().floor() + 1.0),
    );
    let px = |x: f64| L + x / xmax * (W - L - R);
    let py = |y: f64| T + (hi - y.max(0.1).log10()) / (hi - lo) * (H - T - B);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" font-size="14" text-anchor="middle">{}</text>"#,
        (W - R + L) / 2.0,
        esc(title)
    );
    let (x0, x1, y0, y1) = (L, W - R, T, H - B);
    let _ = writeln!(
        o,
        r#"<path d="M{x0} {y0} V{y1} H{x1}" stroke="black" fill="none"/>"#
    );
    let mut e = lo;
    while e <= hi {
        let y = py(10f64.powf(e));
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            10f64.powf(e)
        );
        e += 1.0;
    }
    for i in 0..=5 {
        let v = xmax * f64::from(i) / 5.0;
        let x = px(v);
        let _ = writeln!(
            o,
            r#"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" text-anchor="middle">{:.0}k</text>"#,
            y1 + 5.0,
            y1 + 18.0,
            v / 1000.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">offered rate (frames/s)</text>"#,
        (x0 + x1) / 2.0,
        H - 10.0
    );
    let _ = writeln!(
        o,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">latency µs (log)</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let c = COLORS.get(i % COLORS.len()).copied().unwrap_or("black");
        for (dash, pick) in [("", 0usize), (r#" stroke-dasharray="6 4""#, 1)] {
            let line: Vec<String> = s
                .points
                .iter()
                .map(|&(x, p50, p99)| {
                    format!("{:.1},{:.1}", px(x), py(if pick == 0 { p50 } else { p99 }))
                })
                .collect();
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="{}"/>"#,
                line.join(" ")
            );
            for p in &line {
                if let Some((x, y)) = p.split_once(',') {
                    let _ = writeln!(o, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{c}"/>"#);
                }
            }
        }
        let ly = T + 10.0 + i as f64 * 20.0;
        let _ = writeln!(
            o,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x1 + 15.0,
            x1 + 40.0,
            x1 + 46.0,
            ly + 4.0,
            esc(&s.label)
        );
    }
    let ly = T + 20.0 + series.len() as f64 * 20.0;
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{ly}">solid p50, dashed p99</text>"#,
        x1 + 15.0
    );
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_has_one_polyline_pair_per_series_and_escapes_labels() {
        let s = vec![
            Series {
                label: "direct".into(),
                points: vec![(1000.0, 50.0, 80.0), (5000.0, 60.0, 120.0)],
            },
            Series {
                label: "a<b".into(),
                points: vec![(1000.0, 70.0, 100.0)],
            },
        ];
        let svg = sweep_svg("sweep", &s);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
