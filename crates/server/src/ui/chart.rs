//! Decisions per minute as stacked bars, laid out here and drawn as SVG
//! by the template (no script).

use quota_engine::stats::MINUTE_MS;
use quota_store::DecisionMinute;

/// The statuses, bottom to top.
pub(crate) const STATUSES: [&str; 4] = ["allow", "allow_grace", "warn_only", "block"];

/// The drawing's size in SVG units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 140.0;

/// One status's part of a bar.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) status: &'static str,
    pub(crate) count: i64,
    pub(crate) y: String,
    pub(crate) height: String,
}

/// One bucket of time.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    pub(crate) x: String,
    pub(crate) width: String,
    /// `10:15` (UTC).
    pub(crate) label: String,
    pub(crate) total: i64,
    pub(crate) segments: Vec<Segment>,
}

/// A chart and its totals per status.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    pub(crate) title: &'static str,
    pub(crate) bucket: &'static str,
    pub(crate) bars: Vec<Bar>,
    pub(crate) peak: i64,
    pub(crate) totals: Vec<(&'static str, i64)>,
    pub(crate) width: f64,
    pub(crate) height: f64,
}

fn clock(ms: i64) -> String {
    let minutes = ms.div_euclid(MINUTE_MS).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `buckets` bars of `minutes` each, the last one holding the minute of
/// `now_ms`, from `rows` (any plan and key).
pub(crate) fn chart(
    title: &'static str,
    bucket: &'static str,
    rows: &[DecisionMinute],
    now_ms: i64,
    buckets: usize,
    minutes: i64,
) -> Chart {
    let span = minutes * MINUTE_MS;
    let last = now_ms.div_euclid(span) * span;
    let count = i64::try_from(buckets).unwrap_or(i64::MAX);
    let first = last - (count - 1) * span;
    let mut counts = vec![[0i64; 4]; buckets];
    let mut totals = [0i64; 4];
    for row in rows {
        let Some(status) = STATUSES.iter().position(|s| *s == row.status) else {
            continue;
        };
        if row.minute_ms < first || row.minute_ms >= last + span {
            continue;
        }
        let Ok(i) = usize::try_from((row.minute_ms - first) / span) else {
            continue;
        };
        counts[i][status] += row.count;
        totals[status] += row.count;
    }
    let peak = counts
        .iter()
        .map(|c| c.iter().sum::<i64>())
        .max()
        .unwrap_or(0);
    let step = WIDTH / buckets.max(1) as f64;
    let scale = if peak > 0 { HEIGHT / peak as f64 } else { 0.0 };
    let bars = counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut top = HEIGHT;
            let segments = STATUSES
                .iter()
                .zip(c)
                .filter(|(_, n)| **n > 0)
                .map(|(status, n)| {
                    let height = *n as f64 * scale;
                    top -= height;
                    Segment {
                        status,
                        count: *n,
                        y: format!("{top:.2}"),
                        height: format!("{height:.2}"),
                    }
                })
                .collect();
            Bar {
                x: format!("{:.2}", i as f64 * step),
                width: format!("{:.2}", (step - 1.0).max(0.5)),
                label: clock(first + i64::try_from(i).unwrap_or(0) * span),
                total: c.iter().sum(),
                segments,
            }
        })
        .collect();
    Chart {
        title,
        bucket,
        bars,
        peak,
        totals: STATUSES.iter().copied().zip(totals).collect(),
        width: WIDTH,
        height: HEIGHT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(minute: i64, status: &str, count: i64) -> DecisionMinute {
        DecisionMinute {
            minute_ms: minute * MINUTE_MS,
            plan_id: "free".into(),
            entitlement_key: "drafts.max".into(),
            status: status.into(),
            count,
        }
    }

    #[test]
    fn counts_land_in_their_bucket_and_older_ones_are_left_out() {
        let now = 100 * MINUTE_MS + 5_000;
        let rows = [
            row(100, "allow", 3),
            row(100, "block", 1),
            row(99, "warn_only", 2),
            row(40, "allow", 50),
        ];
        let chart = chart("t", "minute", &rows, now, 60, 1);
        assert_eq!(chart.bars.len(), 60);
        assert_eq!(chart.bars[59].total, 4);
        assert_eq!(chart.bars[58].total, 2);
        assert_eq!(chart.peak, 4);
        assert_eq!(
            chart.totals,
            vec![
                ("allow", 3),
                ("allow_grace", 0),
                ("warn_only", 2),
                ("block", 1)
            ]
        );
        assert_eq!(chart.bars[59].label, "01:40");
        let day = super::chart("d", "15 minutes", &rows, now, 96, 15);
        assert_eq!(day.totals[0], ("allow", 53));
    }
}
