//! Result types of the comparative bench and their Markdown, JSON and SVG
//! renderings.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::load::WrkSample;
use super::pingpong;

/// One closed-loop measurement of one server.
#[derive(Clone, Copy)]
pub struct Sample {
    pub rps: f64,
    pub cpu_us: f64,
    pub core_us: f64,
    pub ctxt: f64,
    /// Per request, counted in the first round's extra window (`None`
    /// where not counted): syscalls, and from the io_uring tracepoints SQEs
    /// submitted, internal poll arms and io-wq punts.
    pub sys: Option<f64>,
    pub sqes: Option<f64>,
    pub poll_arms: Option<f64>,
    pub punts: Option<f64>,
    pub lg_cpu: f64,
}

/// Closed-loop results of one (workload, peer) over all rounds.
pub struct Row {
    pub workload: String,
    pub peer: &'static str,
    pub samples: Vec<Sample>,
    pub error: Option<String>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Row {
    pub fn med(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(self.samples.iter().map(f).collect())
    }
    /// `f` of this row relative to `base`: the median over rounds of each
    /// round's ratio (the peers of a round take their slices in turns, so
    /// a round's ratio compares like with like), or the ratio of the
    /// medians when the rows do not have the same rounds.
    pub fn ratio_to(&self, base: Option<&Row>, f: impl Fn(&Sample) -> f64) -> f64 {
        let Some(base) = base else { return f64::NAN };
        if self.samples.len() != base.samples.len() || self.samples.is_empty() {
            return self.med(&f) / base.med(&f);
        }
        median(
            self.samples
                .iter()
                .zip(&base.samples)
                .map(|(a, b)| f(a) / f(b))
                .collect(),
        )
    }
    /// Median of a per-request kernel count over the samples that have it.
    fn counted(&self, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.samples.iter().filter_map(f).collect();
        if v.is_empty() { None } else { Some(median(v)) }
    }
}

/// Open-loop results of one (workload, peer): histograms merged over rounds.
pub struct LatRow {
    pub workload: String,
    pub peer: &'static str,
    /// Offered load (requests/s); NaN until tokio's peak is known.
    pub rate: f64,
    pub hist: Option<Histogram<u64>>,
    pub achieved: Vec<f64>,
    pub cpu_us: Vec<f64>,
    pub error: Option<String>,
}

impl LatRow {
    /// Latency quantile in µs (NaN without samples).
    pub fn q_us(&self, q: f64) -> f64 {
        match &self.hist {
            Some(h) if !h.is_empty() => h.value_at_quantile(q) as f64 / 1e3,
            _ => f64::NAN,
        }
    }
    fn max_us(&self) -> f64 {
        self.hist.as_ref().map_or(f64::NAN, |h| h.max() as f64 / 1e3)
    }
    fn count(&self) -> u64 {
        self.hist.as_ref().map_or(0, |h| h.len())
    }
}

/// wrk results of one (workload, peer).
pub struct WrkRow {
    pub workload: String,
    pub peer: &'static str,
    pub samples: Vec<WrkSample>,
    pub error: Option<String>,
}

impl WrkRow {
    fn med(&self, f: impl Fn(&WrkSample) -> f64) -> f64 {
        median(self.samples.iter().map(f).collect())
    }
}

/// Everything one run measured.
pub struct Report<'a> {
    pub header: String,
    pub mode: &'a str,
    pub rounds: usize,
    pub systool: String,
    pub machine: Vec<(&'static str, String)>,
    pub peers: Vec<&'static str>,
    pub workloads: Vec<String>,
    pub rows: Vec<Row>,
    pub lat_workloads: Vec<String>,
    pub lat: Vec<LatRow>,
    pub lat_note: String,
    pub wrk_workloads: Vec<String>,
    pub wrk: Vec<WrkRow>,
    /// Why wrk was not run, if it was not.
    pub wrk_skipped: Option<String>,
    /// Cross-loop ping-pong rows (empty: not run) and how they were run.
    pub pingpong: Vec<pingpong::Row>,
    pub pingpong_note: String,
    pub files_md: Option<String>,
}

fn fmt_ratio(x: f64, base: f64) -> String {
    if x.is_finite() && base.is_finite() && base > 0.0 {
        format!("{:.2}", x / base)
    } else {
        "–".into()
    }
}

fn cell(e: &str) -> String {
    e.replace('|', "/").replace('\n', " ")
}

/// A row's error as a table cell: `skipped: …` (a peer that does not serve
/// this protocol or kernel) as is, anything else as `unavailable: …`.
pub fn why(e: &str) -> String {
    if e.starts_with("skipped:") {
        cell(e)
    } else {
        format!("unavailable: {}", cell(e))
    }
}

/// A per-request count, or `n/a` when it was not counted.
fn fmt_count(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.2}"))
}

pub const BASELINE: &str = "tokio-ct";

impl Report<'_> {
    fn row(&self, w: &str, p: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.workload == w && r.peer == p)
    }
    fn lat_row(&self, w: &str, p: &str) -> Option<&LatRow> {
        self.lat.iter().find(|r| r.workload == w && r.peer == p)
    }
    fn wrk_row(&self, w: &str, p: &str) -> Option<&WrkRow> {
        self.wrk.iter().find(|r| r.workload == w && r.peer == p)
    }

    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "{}\n", self.header);
        if !self.workloads.is_empty() {
            self.closed_markdown(&mut m);
        }
        if !self.lat_workloads.is_empty() {
            let _ = writeln!(
                m,
                "\n### Open loop: latency at a fixed rate of 50% of tokio's closed-loop peak (µs; coordinated omission corrected)\n\n{}\n",
                self.lat_note
            );
            let _ = writeln!(
                m,
                "| workload | peer | offered req/s | achieved req/s | p50 | p99 | p99.9 | max | p99 vs tokio | server CPU µs/req | samples |"
            );
            let _ = writeln!(m, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for w in &self.lat_workloads {
                let b99 = self
                    .lat_row(w, BASELINE)
                    .filter(|r| r.error.is_none())
                    .map_or(f64::NAN, |r| r.q_us(0.99));
                for p in &self.peers {
                    let Some(r) = self.lat_row(w, p) else { continue };
                    if let Some(e) = &r.error {
                        let _ = writeln!(m, "| {w} | {p} | {} | | | | | | | | |", why(e));
                        continue;
                    }
                    let _ = writeln!(
                        m,
                        "| {w} | {p} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {} | {:.2} | {} |",
                        r.rate,
                        median(r.achieved.clone()),
                        r.q_us(0.5),
                        r.q_us(0.99),
                        r.q_us(0.999),
                        r.max_us(),
                        fmt_ratio(r.q_us(0.99), b99),
                        median(r.cpu_us.clone()),
                        r.count()
                    );
                }
            }
        }
        if !self.wrk_workloads.is_empty() {
            let _ = writeln!(
                m,
                "\n### HTTP/1.1 keep-alive \"hello\" under wrk (closed loop, `wrk -t<load-generator CPUs>`)\n"
            );
            if let Some(why) = &self.wrk_skipped {
                let _ = writeln!(m, "{why}");
            } else {
                let _ = writeln!(
                    m,
                    "| workload | peer | req/s | req/s vs tokio | p50 µs | p99 µs | server CPU µs/req | CPU vs tokio |"
                );
                let _ = writeln!(m, "|---|---|---:|---:|---:|---:|---:|---:|");
                for w in &self.wrk_workloads {
                    let base = self.wrk_row(w, BASELINE).filter(|r| r.error.is_none());
                    let (br, bc) = base.map_or((f64::NAN, f64::NAN), |b| (b.med(|s| s.rps), b.med(|s| s.cpu_us)));
                    for p in &self.peers {
                        let Some(r) = self.wrk_row(w, p) else { continue };
                        if let Some(e) = &r.error {
                            let _ = writeln!(m, "| {w} | {p} | {} | | | | | |", why(e));
                            continue;
                        }
                        let (q, c) = (r.med(|s| s.rps), r.med(|s| s.cpu_us));
                        let _ = writeln!(
                            m,
                            "| {w} | {p} | {q:.0} | {} | {:.0} | {:.0} | {c:.2} | {} |",
                            fmt_ratio(q, br),
                            r.med(|s| s.p50_us),
                            r.med(|s| s.p99_us),
                            fmt_ratio(c, bc)
                        );
                    }
                }
            }
        }
        if !self.pingpong.is_empty() {
            self.pingpong_markdown(&mut m);
        }
        if let Some(f) = &self.files_md {
            let _ = writeln!(m, "\n### File reads\n\n{}", f.trim_end());
        }
        m
    }

    fn closed_markdown(&self, m: &mut String) {
        let _ = writeln!(
            m,
            "### Closed loop: server CPU µs per request (median; lower is better)\n"
        );
        let _ = write!(m, "| peer |");
        for w in &self.workloads {
            let _ = write!(m, " {w} |");
        }
        let _ = write!(m, "\n|---|");
        for _ in &self.workloads {
            let _ = write!(m, "---:|");
        }
        m.push('\n');
        for p in &self.peers {
            let _ = write!(m, "| {p} |");
            for w in &self.workloads {
                match self.row(w, p) {
                    Some(r) if r.error.is_none() => {
                        let _ = write!(m, " {:.2} |", r.med(|s| s.cpu_us));
                    }
                    _ => m.push_str(" n/a |"),
                }
            }
            m.push('\n');
        }
        let uring_counted = self.rows.iter().any(|r| r.counted(|s| s.sqes).is_some());
        if uring_counted {
            let _ = writeln!(
                m,
                "\n### Closed loop: io_uring SQEs / internal poll arms per request (first round; 0 = no io_uring)\n"
            );
            let _ = write!(m, "| peer |");
            for w in &self.workloads {
                let _ = write!(m, " {w} |");
            }
            let _ = write!(m, "\n|---|");
            for _ in &self.workloads {
                let _ = write!(m, "---:|");
            }
            m.push('\n');
            for p in &self.peers {
                let _ = write!(m, "| {p} |");
                for w in &self.workloads {
                    match self.row(w, p).filter(|r| r.error.is_none()) {
                        Some(r) => {
                            let _ = write!(
                                m,
                                " {} / {} |",
                                fmt_count(r.counted(|s| s.sqes)),
                                fmt_count(r.counted(|s| s.poll_arms))
                            );
                        }
                        None => m.push_str(" n/a |"),
                    }
                }
                m.push('\n');
            }
        }
        let _ = writeln!(
            m,
            "\nMedians over rounds; the `vs tokio` columns are the median of each round's ratio (a round's peers are measured in turns)."
        );
        let _ = writeln!(
            m,
            "\n| workload | peer | server CPU µs/req | CPU vs tokio | server CPUs busy µs/req | req/s | req/s vs tokio | ctx sw/req | syscalls/req | SQEs/req | poll arms/req | io-wq punts/req | load-gen CPU |"
        );
        let _ = writeln!(m, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for w in &self.workloads {
            let base = self.row(w, BASELINE).filter(|r| r.error.is_none());
            for p in &self.peers {
                let Some(r) = self.row(w, p) else { continue };
                if let Some(e) = &r.error {
                    let _ = writeln!(m, "| {w} | {p} | {} | | | | | | | | | | |", why(e));
                    continue;
                }
                let (c, q) = (r.med(|s| s.cpu_us), r.med(|s| s.rps));
                let _ = writeln!(
                    m,
                    "| {w} | {p} | {c:.2} | {} | {:.2} | {q:.0} | {} | {:.3} | {} | {} | {} | {} | {:.0}% |",
                    fmt_ratio(r.ratio_to(base, |s| s.cpu_us), 1.0),
                    r.med(|s| s.core_us),
                    fmt_ratio(r.ratio_to(base, |s| s.rps), 1.0),
                    r.med(|s| s.ctxt),
                    fmt_count(r.counted(|s| s.sys)),
                    fmt_count(r.counted(|s| s.sqes)),
                    fmt_count(r.counted(|s| s.poll_arms)),
                    fmt_count(r.counted(|s| s.punts)),
                    r.med(|s| s.lg_cpu) * 100.0
                );
            }
        }
    }

    fn pingpong_markdown(&self, m: &mut String) {
        let _ = writeln!(
            m,
            "\n### Cross-loop ping-pong: two loops on two CPUs, one message in flight\n\n{}\n",
            self.pingpong_note
        );
        let _ = writeln!(
            m,
            "| peer | one-way p50 µs | one-way p99 µs | msgs/s | msgs/s vs {} | pong on another thread | MSG_RING wake-ups/msg | eventfd wake-ups/msg | syscalls/msg | read/msg | write/msg | SQEs/msg |",
            pingpong::BASELINE
        );
        let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let base = self
            .pingpong
            .iter()
            .find(|r| r.peer == pingpong::BASELINE && r.error.is_none())
            .map_or(f64::NAN, |r| r.med(|s| s.msgs_per_s));
        for r in &self.pingpong {
            if let Some(e) = &r.error {
                let _ = writeln!(m, "| {} | {} | | | | | | | | | | |", r.peer, why(e));
                continue;
            }
            let rate = r.med(|s| s.msgs_per_s);
            let _ = writeln!(
                m,
                "| {} | {:.2} | {:.2} | {rate:.0} | {} | {:.0}% | {:.3} | {:.3} | {} | {} | {} | {} |",
                r.peer,
                r.med(|s| s.p50_us),
                r.med(|s| s.p99_us),
                fmt_ratio(rate, base),
                r.med(|s| s.cross_thread) * 100.0,
                r.med(|s| s.wake_msg_ring),
                r.med(|s| s.wake_eventfd),
                fmt_count(r.counted(|s| s.syscalls)),
                fmt_count(r.counted(|s| s.reads)),
                fmt_count(r.counted(|s| s.writes)),
                fmt_count(r.counted(|s| s.sqes)),
            );
        }
    }

    pub fn json(&self) -> String {
        let mut j = String::from("{\n");
        let _ = writeln!(
            j,
            "  \"mode\": {},\n  \"rounds\": {},\n  \"syscall_counter\": {},",
            json_str(self.mode),
            self.rounds,
            json_str(&self.systool)
        );
        let mach: Vec<String> = self
            .machine
            .iter()
            .map(|(k, v)| format!("{}: {}", json_str(k), json_str(v)))
            .collect();
        let _ = writeln!(j, "  \"machine\": {{{}}},", mach.join(", "));
        let items: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                json_row(&r.workload, r.peer, "", r.error.as_deref(), || {
                    let samples: Vec<String> = r
                        .samples
                        .iter()
                        .map(|s| {
                            format!(
                                "{{\"req_per_s\": {}, \"server_cpu_us_per_req\": {}, \"cpu0_busy_us_per_req\": {}, \"ctxt_per_req\": {}, \"syscalls_per_req\": {}, \"sqes_per_req\": {}, \"poll_arms_per_req\": {}, \"iowq_punts_per_req\": {}, \"loadgen_cpu_share\": {}}}",
                                json_num(s.rps),
                                json_num(s.cpu_us),
                                json_num(s.core_us),
                                json_num(s.ctxt),
                                json_opt(s.sys),
                                json_opt(s.sqes),
                                json_opt(s.poll_arms),
                                json_opt(s.punts),
                                json_num(s.lg_cpu)
                            )
                        })
                        .collect();
                    format!(
                        ", \"median_server_cpu_us_per_req\": {}, \"median_req_per_s\": {}, \"samples\": [{}]",
                        json_num(r.med(|s| s.cpu_us)),
                        json_num(r.med(|s| s.rps)),
                        samples.join(", ")
                    )
                })
            })
            .collect();
        let _ = writeln!(j, "  \"closed_loop\": [\n{}\n  ],", items.join(",\n"));
        let lat: Vec<String> = self
            .lat
            .iter()
            .map(|r| {
                let head = format!(", \"offered_req_per_s\": {}", json_num(r.rate));
                json_row(&r.workload, r.peer, &head, r.error.as_deref(), || {
                    format!(
                        ", \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \"max_us\": {}, \"samples\": {}, \"achieved_req_per_s\": [{}], \"server_cpu_us_per_req\": [{}]",
                        json_num(r.q_us(0.5)),
                        json_num(r.q_us(0.99)),
                        json_num(r.q_us(0.999)),
                        json_num(r.max_us()),
                        r.count(),
                        json_nums(&r.achieved),
                        json_nums(&r.cpu_us)
                    )
                })
            })
            .collect();
        let _ = writeln!(j, "  \"open_loop\": [\n{}\n  ],", lat.join(",\n"));
        let wrk: Vec<String> = self
            .wrk
            .iter()
            .map(|r| {
                json_row(&r.workload, r.peer, "", r.error.as_deref(), || {
                    let s: Vec<String> = r
                        .samples
                        .iter()
                        .map(|s| {
                            format!(
                                "{{\"req_per_s\": {}, \"requests\": {}, \"p50_us\": {}, \"p99_us\": {}, \"server_cpu_us_per_req\": {}}}",
                                json_num(s.rps),
                                s.requests,
                                json_num(s.p50_us),
                                json_num(s.p99_us),
                                json_num(s.cpu_us)
                            )
                        })
                        .collect();
                    format!(", \"samples\": [{}]", s.join(", "))
                })
            })
            .collect();
        let _ = writeln!(
            j,
            "  \"wrk_skipped\": {},\n  \"wrk\": [\n{}\n  ],",
            self.wrk_skipped.as_deref().map_or("null".into(), json_str),
            wrk.join(",\n")
        );
        let pp: Vec<String> = self
            .pingpong
            .iter()
            .map(|r| {
                json_row("pingpong", r.peer, "", r.error.as_deref(), || {
                    let s: Vec<String> = r
                        .samples
                        .iter()
                        .map(|s| {
                            format!(
                                "{{\"one_way_p50_us\": {}, \"one_way_p99_us\": {}, \"msgs_per_s\": {}, \"msg_ring_wakeups_per_msg\": {}, \"eventfd_wakeups_per_msg\": {}, \"pong_on_other_thread_share\": {}, \"syscalls_per_msg\": {}, \"reads_per_msg\": {}, \"writes_per_msg\": {}, \"sqes_per_msg\": {}}}",
                                json_num(s.p50_us),
                                json_num(s.p99_us),
                                json_num(s.msgs_per_s),
                                json_num(s.wake_msg_ring),
                                json_num(s.wake_eventfd),
                                json_num(s.cross_thread),
                                json_opt(s.syscalls),
                                json_opt(s.reads),
                                json_opt(s.writes),
                                json_opt(s.sqes)
                            )
                        })
                        .collect();
                    format!(", \"samples\": [{}]", s.join(", "))
                })
            })
            .collect();
        let _ = writeln!(
            j,
            "  \"pingpong_note\": {},\n  \"pingpong\": [\n{}\n  ],",
            json_str(&self.pingpong_note),
            pp.join(",\n")
        );
        let _ = writeln!(
            j,
            "  \"files_markdown\": {}\n}}",
            self.files_md.as_deref().map_or("null".into(), json_str)
        );
        j
    }

    /// Three bar panels: server CPU per request, req/s relative to tokio
    /// (closed loop), and open-loop p50/p99 latency.
    pub fn svg(&self) -> String {
        let cpu = |w: &str, p: &str| {
            self.row(w, p)
                .filter(|r| r.error.is_none())
                .map(|r| r.med(|s| s.cpu_us))
        };
        let rps_ratio = |w: &str, p: &str| {
            let base = self.row(w, BASELINE).filter(|r| r.error.is_none())?;
            self.row(w, p)
                .filter(|r| r.error.is_none())
                .map(|r| r.ratio_to(Some(base), |s| s.rps))
        };
        let lat_groups: Vec<String> = self
            .lat_workloads
            .iter()
            .flat_map(|w| [format!("{w} p50"), format!("{w} p99")])
            .collect();
        let lat = |g: &str, p: &str| {
            let (w, q) = if let Some(w) = g.strip_suffix(" p50") {
                (w, 0.5)
            } else {
                (g.strip_suffix(" p99")?, 0.99)
            };
            self.lat_row(w, p).filter(|r| r.error.is_none()).map(|r| r.q_us(q))
        };
        let groups = self.workloads.len().max(lat_groups.len()).max(1);
        let (bw, gap, left, ph) = (12.0, 22.0, 60.0, 300.0);
        let gw = bw * self.peers.len() as f64 + gap;
        let width = (left + gw * groups as f64 + 170.0).max(760.0);
        let panels = if lat_groups.is_empty() { 2.0 } else { 3.0 };
        let height = 30.0 + panels * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let geo = Geo { bw, gap, left, width };
        self.panel(
            &mut s,
            &geo,
            10.0,
            "Closed loop: server CPU µs per request (lower is better)",
            &self.workloads,
            &cpu,
        );
        self.panel(
            &mut s,
            &geo,
            10.0 + ph,
            "Closed loop: req/s relative to tokio-ct (higher is better; load generator often the limit)",
            &self.workloads,
            &rps_ratio,
        );
        if !lat_groups.is_empty() {
            self.panel(
                &mut s,
                &geo,
                10.0 + 2.0 * ph,
                "Open loop at 50% of tokio's peak: latency µs (lower is better)",
                &lat_groups,
                &lat,
            );
        }
        for (pi, p) in self.peers.iter().enumerate() {
            let y = 50.0 + 14.0 * pi as f64;
            let x = width - 160.0;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.0}" y="{y:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{:.0}">{p}</text>"#,
                COLORS[pi % COLORS.len()],
                x + 14.0,
                y + 9.0
            );
        }
        s.push_str("</svg>\n");
        s
    }

    fn panel(
        &self,
        s: &mut String,
        g: &Geo,
        y0: f64,
        title: &str,
        groups: &[String],
        val: &dyn Fn(&str, &str) -> Option<f64>,
    ) {
        let (top, h) = (y0 + 30.0, 220.0);
        let gw = g.bw * self.peers.len() as f64 + g.gap;
        let max = groups
            .iter()
            .flat_map(|w| self.peers.iter().filter_map(move |p| val(w, p)))
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let max = if max > 0.0 { max * 1.1 } else { 1.0 };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.0}" font-size="14">{title}</text>"#,
            g.left,
            y0 + 16.0
        );
        for t in 0..=4 {
            let v = max * t as f64 / 4.0;
            let y = top + h - h * t as f64 / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{}" x2="{:.0}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
                g.left,
                g.width - 170.0,
                g.left - 4.0,
                y + 4.0
            );
        }
        for (wi, w) in groups.iter().enumerate() {
            let x0 = g.left + g.gap / 2.0 + gw * wi as f64;
            for (pi, p) in self.peers.iter().enumerate() {
                if let Some(v) = val(w, p).filter(|v| v.is_finite()) {
                    let bh = h * v / max;
                    let _ = writeln!(
                        s,
                        r#"<rect x="{:.1}" y="{:.1}" width="{}" height="{bh:.1}" fill="{}"><title>{p} {w}: {v:.2}</title></rect>"#,
                        x0 + g.bw * pi as f64,
                        top + h - bh,
                        g.bw,
                        COLORS[pi % COLORS.len()]
                    );
                }
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{w}</text>"#,
                x0 + g.bw * self.peers.len() as f64 / 2.0,
                top + h + 16.0
            );
        }
    }
}

struct Geo {
    bw: f64,
    gap: f64,
    left: f64,
    width: f64,
}

const COLORS: &[&str] = &[
    "#d62728", "#ff9896", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f", "#bcbd22", "#e377c2", "#17becf", "#8c564b",
];

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// One result object: workload, peer, `head` (more fields, each starting
/// with ", "), then either the error or `body()` (fields likewise).
fn json_row(workload: &str, peer: &str, head: &str, error: Option<&str>, body: impl FnOnce() -> String) -> String {
    let rest = match error {
        Some(e) => format!(", \"error\": {}", json_str(e)),
        None => body(),
    };
    format!(
        "    {{\"workload\": {}, \"peer\": {}{head}{rest}}}",
        json_str(workload),
        json_str(peer)
    )
}

fn json_nums(v: &[f64]) -> String {
    v.iter().map(|x| json_num(*x)).collect::<Vec<_>>().join(", ")
}

fn json_opt(x: Option<f64>) -> String {
    x.map_or("null".into(), json_num)
}

fn json_num(x: f64) -> String {
    if x.is_finite() { format!("{x}") } else { "null".into() }
}
