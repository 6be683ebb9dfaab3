//! The Markdown summary: criterion estimates, latency percentiles, ratios.

use super::*;

pub fn header_lines(mode: &Mode) -> Vec<String> {
    let mut h = vec![
        format!(
            "# ringloop runtime micro-benchmarks (criterion, {} mode)\n",
            mode.name()
        ),
        format!(
            "- CPUs this process may run on: {} (pin with `taskset -c 1` for stable numbers)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        format!(
            "- `Instant::now()` here: {:.1} ns (vDSO clock_gettime; on some VMs it is a large share of a loop iteration)",
            clock_read_ns()
        ),
    ];
    for rt in [Rt::Uring, Rt::Fallback] {
        match ringloop_loop(rt) {
            Ok(lp) => h.push(format!("- {}: {}", rt.id(), lp.driver_description())),
            Err(e) => h.push(format!("- {}: {e}", rt.id())),
        }
    }
    h.push("- tokio: current_thread with `enable_time()` only (the workloads do no I/O)".into());
    h
}

/// Mean cost of one `Instant::now()` over a short burst.
pub fn clock_read_ns() -> f64 {
    const N: u32 = 200_000;
    let t0 = Instant::now();
    for _ in 0..N {
        black_box(Instant::now());
    }
    t0.elapsed().as_secs_f64() * 1e9 / f64::from(N)
}

/// `$CARGO_TARGET_DIR`, else this package's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Where criterion saves its results (its own rule, minus the `cargo
/// metadata` call it makes when `CARGO_TARGET_DIR` is unset).
pub fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"))
}

/// A time per criterion iteration, in ns.
pub struct Estimate {
    pub point: f64,
    /// 95% confidence interval, if criterion's.
    pub ci: Option<(f64, f64)>,
    /// Which statistic.
    pub from: &'static str,
}

/// The text right after `"key":` in a JSON document.
pub fn json_after<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    json.find(&pat).map(|i| json[i + pat.len()..].trim_start())
}

/// The number right after `"key":`.
pub fn json_number(json: &str, key: &str) -> Option<f64> {
    let rest = json_after(json, key)?;
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Criterion's typical estimate (slope if it sampled linearly, else mean)
/// from `estimates.json` written by this run.
pub fn criterion_estimate(group: &str, function: &str, started: SystemTime) -> Option<Estimate> {
    let path = criterion_dir()
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let fresh = std::fs::metadata(&path).and_then(|m| m.modified()).ok()? >= started;
    if !fresh {
        return None;
    }
    let json = std::fs::read_to_string(&path).ok()?;
    let (obj, from) = match json_after(&json, "slope") {
        Some(s) if !s.starts_with("null") => (s, "criterion slope"),
        _ => (json_after(&json, "mean")?, "criterion mean"),
    };
    Some(Estimate {
        point: json_number(obj, "point_estimate")?,
        ci: Some((json_number(obj, "lower_bound")?, json_number(obj, "upper_bound")?)),
        from,
    })
}

/// This harness's own figure: total time over total iterations of the
/// measured calls.
pub fn own_estimate(calls: &[Call], smoke: bool) -> Option<Estimate> {
    let iters: u64 = calls.iter().map(|c| c.iters).sum();
    let time: Duration = calls.iter().map(|c| c.time).sum();
    (iters > 0).then(|| Estimate {
        point: time.as_secs_f64() * 1e9 / iters as f64,
        ci: None,
        from: if smoke {
            "own (1 call)"
        } else {
            "own (no criterion file)"
        },
    })
}

pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

pub fn fmt_rate(ns_per_op: f64) -> String {
    let per_s = 1e9 / ns_per_op;
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.1} k/s", per_s / 1e3)
    }
}

/// A latency (seconds, possibly negative) in µs.
pub fn fmt_lat(secs: f64) -> String {
    format!("{:.1} µs", secs * 1e6)
}

/// `q`-quantile of sorted samples (nearest rank); NaN if empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Distribution of one runtime's latency samples (seconds).
#[derive(Clone, Copy)]
pub struct LatencyStats {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
}

/// The ratio column: `value / baseline`.
pub fn ratio(row: &Row, value: f64, baseline: Option<f64>) -> String {
    match (row.bench.baseline, baseline) {
        (None, _) => "n/a (no tokio analogue)".into(),
        (Some(b), _) if b == row.rt => "1 (baseline)".into(),
        (Some(_), None) => "n/a (baseline not run)".into(),
        (Some(_), Some(base)) if row.rt.is_ringloop() => format!("**{:.2}**", value / base),
        (Some(_), Some(base)) => format!("{:.2} (tokio vs tokio)", value / base),
    }
}

pub fn summary(rows: &[Row], mode: &Mode, started: SystemTime, header: &[String], took: Duration) -> String {
    let mut out = header.to_vec();
    out.push(format!("- this run: {:.0} s\n", took.as_secs_f64()));
    if mode.smoke {
        out.push("Smoke run: one tiny iteration per function, figures meaningless.\n".into());
    }
    out.push("| benchmark | runtime | time/op | 95% CI | ops/s | vs tokio-ct (<1 = ringloop faster) | from |".into());
    out.push("|---|---|---|---|---|---|---|".into());

    // Per-op estimate of every row that ran (None for skipped / filtered).
    let per_op: Vec<Option<(Estimate, f64)>> = rows
        .iter()
        .map(|r| {
            let calls = r.measured(mode);
            if calls.is_empty() {
                return None;
            }
            let est = (!mode.smoke)
                .then(|| criterion_estimate(r.bench.group, r.rt.id(), started))
                .flatten()
                .or_else(|| own_estimate(calls, mode.smoke))?;
            let op = est.point / r.per_iter as f64;
            Some((est, op))
        })
        .collect();
    let baseline_of = |r: &Row, pick: &dyn Fn(usize) -> Option<f64>| -> Option<f64> {
        let b = r.bench.baseline?;
        rows.iter()
            .position(|o| std::ptr::eq(o.bench, r.bench) && o.rt == b)
            .and_then(pick)
    };
    let mut shown_groups: Vec<&str> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let group_ran = rows
            .iter()
            .any(|o| std::ptr::eq(o.bench, r.bench) && !o.measured(mode).is_empty());
        if !group_ran {
            continue;
        }
        if !shown_groups.contains(&r.bench.group) {
            shown_groups.push(r.bench.group);
        }
        let name = format!("{} (per {})", r.bench.group, r.bench.op);
        match (&r.outcome, &per_op[i]) {
            (Outcome::Skipped(why), _) => {
                out.push(format!("| {name} | {} | – | – | – | skipped: {why} | |", r.rt.id()));
            }
            (Outcome::Ran(_), None) => {} // filtered out
            (Outcome::Ran(_), Some((est, op))) => {
                let base = baseline_of(r, &|j| per_op[j].as_ref().map(|p| p.1));
                let ci = est.ci.map_or("–".into(), |(lo, hi)| {
                    format!("{}–{}", fmt_ns(lo / r.per_iter as f64), fmt_ns(hi / r.per_iter as f64))
                });
                out.push(format!(
                    "| {name} | {} | {} | {ci} | {} | {} | {} |",
                    r.rt.id(),
                    fmt_ns(*op),
                    fmt_rate(*op),
                    ratio(r, *op, base),
                    est.from,
                ));
            }
        }
    }

    // Latency distributions.
    let pcts: Vec<Option<LatencyStats>> = rows
        .iter()
        .map(|r| {
            if r.bench.kind != Kind::Latency {
                return None;
            }
            let mut lat: Vec<f64> = r.measured(mode).iter().flat_map(|c| c.lat.iter().copied()).collect();
            if lat.is_empty() {
                return None;
            }
            lat.sort_by(f64::total_cmp);
            Some(LatencyStats {
                n: lat.len(),
                p50: percentile(&lat, 0.50),
                p99: percentile(&lat, 0.99),
                mean: lat.iter().sum::<f64>() / lat.len() as f64,
                max: lat[lat.len() - 1],
            })
        })
        .collect();
    if pcts.iter().any(Option::is_some) {
        out.push(String::new());
        out.push(
            "Latency (every sample of the calls criterion measured; lateness for `sleep_1ms_lateness`, \
             wake latency for `xthread_wake_latency`):\n"
                .into(),
        );
        out.push(
            "| benchmark | runtime | samples | p50 | p99 | p50 vs tokio-ct | p99 vs tokio-ct | mean | max |".into(),
        );
        out.push("|---|---|---|---|---|---|---|---|---|".into());
        for (i, r) in rows.iter().enumerate() {
            if r.bench.kind != Kind::Latency {
                continue;
            }
            match (&r.outcome, pcts[i]) {
                (Outcome::Skipped(why), _) => out.push(format!(
                    "| {} | {} | – | – | – | skipped: {why} | | | |",
                    r.bench.group,
                    r.rt.id()
                )),
                (Outcome::Ran(_), None) => {}
                (Outcome::Ran(_), Some(l)) => {
                    let b50 = baseline_of(r, &|j| pcts[j].map(|p| p.p50));
                    let b99 = baseline_of(r, &|j| pcts[j].map(|p| p.p99));
                    out.push(format!(
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        r.bench.group,
                        r.rt.id(),
                        l.n,
                        fmt_lat(l.p50),
                        fmt_lat(l.p99),
                        ratio(r, l.p50, b50),
                        ratio(r, l.p99, b99),
                        fmt_lat(l.mean),
                        fmt_lat(l.max),
                    ));
                }
            }
        }
    }

    out.push(String::new());
    out.push(
        "time/op: criterion's typical estimate per iteration (slope under linear sampling, else mean) \
         divided by the operations per iteration; each runtime runs in its own criterion function, \
         one after the other."
            .into(),
    );
    out.push(String::new());
    for b in BENCHES.iter().filter(|b| shown_groups.contains(&b.group)) {
        let per_iter = rows
            .iter()
            .find(|r| std::ptr::eq(r.bench, b))
            .map_or(b.per_iter, |r| r.per_iter);
        out.push(format!(
            "- `{}` ({per_iter} {}(s) per iteration): {}",
            b.group, b.op, b.note
        ));
    }
    out.join("\n")
}
