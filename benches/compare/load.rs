//! Load generators of the comparative bench. All run in the bench process
//! (pinned to the load-generator CPUs, default CPU 1) and verify every
//! reply byte:
//!
//! - closed loop ([`phase`]): per load thread (one per load-generator CPU)
//!   one tokio current_thread runtime, one task per connection or UDP
//!   socket, one request in flight each, as fast as the server answers;
//! - open loop ([`open_loop`]): one thread with non-blocking sockets and
//!   epoll (sleeping in `epoll_pwait2` until 30 µs before the next scheduled
//!   send, then spinning), every connection sending on its own fixed
//!   schedule; latency is measured from the *intended* send time, so a
//!   server stall that delays later sends is charged to those requests
//!   (coordinated omission corrected, as wrk2 does);
//! - `wrk` ([`wrk`]), when installed, for the HTTP workload.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::peers::http::RESPONSE;

/// The request every HTTP client sends (what wrk sends, minus its headers'
/// exact spelling).
pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// A closed-loop client: one request/response exchange at a time.
pub trait Client: Sized + 'static {
    /// Sends one request and reads and verifies the whole reply.
    async fn round_trip(&mut self) -> io::Result<()>;
}

/// The bytes a connection sends: `c`'s pattern, distinct per connection.
fn pattern(c: usize, size: usize) -> Vec<u8> {
    (0..size)
        .map(|j| (c.wrapping_mul(131) ^ j.wrapping_mul(7)) as u8)
        .collect()
}

/// Writes `seq` into the first (up to) 8 bytes, so stale replies differ.
fn stamp(buf: &mut [u8], seq: u64) {
    let k = buf.len().min(8);
    buf[..k].copy_from_slice(&seq.to_le_bytes()[..k]);
}

/// TCP echo: `out` is sent, `back` must equal it.
pub struct EchoConn {
    s: tokio::net::TcpStream,
    out: Vec<u8>,
    back: Vec<u8>,
    i: u64,
}

impl Client for EchoConn {
    async fn round_trip(&mut self) -> io::Result<()> {
        self.i += 1;
        stamp(&mut self.out, self.i);
        self.s.write_all(&self.out).await?;
        self.s.read_exact(&mut self.back).await?;
        if self.back != self.out {
            return Err(io::Error::other("echo corrupted"));
        }
        Ok(())
    }
}

/// HTTP/1.1 keep-alive: [`REQUEST`] is sent, exactly [`RESPONSE`] must come back.
pub struct HttpConn {
    s: tokio::net::TcpStream,
    back: Vec<u8>,
}

impl Client for HttpConn {
    async fn round_trip(&mut self) -> io::Result<()> {
        self.s.write_all(REQUEST).await?;
        self.s.read_exact(&mut self.back).await?;
        if self.back != RESPONSE {
            return Err(io::Error::other(format!(
                "unexpected HTTP response {:?}",
                String::from_utf8_lossy(&self.back)
            )));
        }
        Ok(())
    }
}

/// UDP ping-pong: one datagram out, the same datagram back.
pub struct UdpConn {
    s: tokio::net::UdpSocket,
    out: Vec<u8>,
    back: Vec<u8>,
    i: u64,
}

impl Client for UdpConn {
    async fn round_trip(&mut self) -> io::Result<()> {
        self.i += 1;
        stamp(&mut self.out, self.i);
        self.s.send(&self.out).await?;
        let n = tokio::time::timeout(Duration::from_secs(2), self.s.recv(&mut self.back))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "UDP reply lost (no datagram within 2 s)"))??;
        if self.back[..n] != self.out[..] {
            return Err(io::Error::other(format!(
                "UDP reply differs ({n} bytes, expected {})",
                self.out.len()
            )));
        }
        Ok(())
    }
}

async fn tcp_connect(addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

pub async fn connect_echo(addr: SocketAddr, n: usize, size: usize) -> io::Result<Vec<EchoConn>> {
    let mut v = Vec::with_capacity(n);
    for c in 0..n {
        v.push(EchoConn {
            s: tcp_connect(addr).await?,
            out: pattern(c, size),
            back: vec![0; size],
            i: 0,
        });
    }
    Ok(v)
}

pub async fn connect_http(addr: SocketAddr, n: usize) -> io::Result<Vec<HttpConn>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(HttpConn {
            s: tcp_connect(addr).await?,
            back: vec![0; RESPONSE.len()],
        });
    }
    Ok(v)
}

pub async fn connect_udp(addr: SocketAddr, n: usize, size: usize) -> io::Result<Vec<UdpConn>> {
    let mut v = Vec::with_capacity(n);
    for c in 0..n {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        s.connect(addr).await?;
        v.push(UdpConn {
            s,
            out: pattern(c, size),
            back: vec![0; size.max(1) + 1],
            i: 0,
        });
    }
    Ok(v)
}

/// Runs every client as a closed loop until `dur` has passed; returns the
/// clients and the number of verified round trips.
pub async fn phase<C: Client>(clients: Vec<C>, dur: Duration) -> io::Result<(Vec<C>, u64)> {
    let deadline = Instant::now() + dur;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::task::spawn_local(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    c.round_trip().await?;
                    done += 1;
                }
                Ok::<_, io::Error>((c, done))
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(tasks.len());
    let mut total = 0;
    let mut err = None;
    for t in tasks {
        match t.await {
            Ok(Ok((c, d))) => {
                clients.push(c);
                total += d;
            }
            Ok(Err(e)) => err = Some(e),
            Err(e) => err = Some(io::Error::other(e.to_string())),
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok((clients, total)),
    }
}

/// What an open-loop connection sends and expects back.
#[derive(Clone, Copy)]
pub enum OpenProto {
    /// `size`-byte messages echoed back.
    Echo(usize),
    /// [`REQUEST`] answered by [`RESPONSE`].
    Http,
}

/// Result of one open-loop run.
pub struct OpenSample {
    /// Latency from intended send time to complete verified reply, ns.
    pub hist: Histogram<u64>,
    /// Replies per second whose request was due in the measured window.
    pub achieved: f64,
    /// Server CPU µs per request over the measured window.
    pub cpu_us: f64,
}

struct OpenConn {
    s: std::net::TcpStream,
    req: Vec<u8>,
    expect: Vec<u8>,
    echo: bool,
    back: Vec<u8>,
    sent: usize,
    got: usize,
    seq: u64,
    next: Instant,
    intended: Option<Instant>,
}

/// Fixed-rate load: `conns` connections share `rate` requests/s, each on its
/// own schedule (interval `conns / rate`, staggered). A connection has at
/// most one request in flight; when a reply is late, the next request goes
/// out as soon as it arrives but its latency still counts from its scheduled
/// time. Requests due during `warm` are discarded; every request due in
/// `window` is waited for (up to 10 s after the window) and recorded.
pub fn open_loop(
    addr: SocketAddr,
    conns: usize,
    proto: OpenProto,
    rate: f64,
    warm: Duration,
    window: Duration,
    server_pid: u32,
) -> io::Result<OpenSample> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidInput, m.to_string());
    if !(rate.is_finite() && rate > 0.0) || conns == 0 {
        return Err(invalid("open loop needs a positive rate and at least one connection"));
    }
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    // SAFETY: plain syscall; the result is checked before use.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ep` is a fresh descriptor nothing else owns.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    let mut cs = Vec::with_capacity(conns);
    let t0 = Instant::now() + Duration::from_millis(5);
    for c in 0..conns {
        let s = std::net::TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: c as u64,
        };
        // SAFETY: both descriptors are open; `ev` is a valid event.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let (req, echo) = match proto {
            OpenProto::Echo(size) => (pattern(c, size), true),
            OpenProto::Http => (REQUEST.to_vec(), false),
        };
        let expect = if echo { req.clone() } else { RESPONSE.to_vec() };
        cs.push(OpenConn {
            s,
            back: vec![0; expect.len()],
            req,
            expect,
            echo,
            sent: 0,
            got: 0,
            seq: 0,
            next: t0 + interval.mul_f64(c as f64 / conns as f64),
            intended: None,
        });
    }
    let wstart = t0 + warm;
    let wend = wstart + window;
    let give_up = wend + Duration::from_secs(10);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).map_err(io::Error::other)?;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; conns.min(256)];
    let mut cpu0 = None;
    let mut done = 0u64;
    let mut pwait2 = true;
    // SAFETY: plain prctl on the calling thread: wake-ups from the epoll
    // timeout as precise as the hrtimer allows (default slack is 50 µs).
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1) };
    loop {
        let now = Instant::now();
        if cpu0.is_none() && now >= wstart {
            cpu0 = Some(super::sys::proc_cpu_ns(server_pid));
        }
        let mut busy = false;
        for c in cs.iter_mut() {
            if c.intended.is_none() && c.next < wend && c.next <= now {
                if c.echo {
                    c.seq += 1;
                    stamp(&mut c.req, c.seq);
                    c.expect.copy_from_slice(&c.req);
                }
                c.intended = Some(c.next);
                c.next += interval;
                c.sent = 0;
                c.got = 0;
            }
            if c.intended.is_some() {
                busy = true;
                if c.sent < c.req.len() {
                    match c.s.write(&c.req[c.sent..]) {
                        Ok(n) => c.sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            } else if c.next < wend {
                busy = true;
            }
        }
        if !busy {
            break;
        }
        if now > give_up {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "server fell behind the schedule: replies still missing 10 s after the window",
            ));
        }
        // Sleep in epoll until shortly before the next scheduled send (spin
        // when it is closer than SPIN), so the generator is a sleeper the
        // scheduler favours on a shared machine, yet sends on time.
        let next_due = cs
            .iter()
            .filter(|c| c.intended.is_none() && c.next < wend)
            .map(|c| c.next)
            .min();
        let sleep = if cs.iter().any(|c| c.intended.is_some() && c.sent < c.req.len()) {
            Duration::ZERO
        } else {
            match next_due {
                Some(t) => t.saturating_duration_since(Instant::now()).saturating_sub(SPIN),
                None => Duration::from_millis(1),
            }
        };
        let n = wait(ep.as_raw_fd(), &mut events, sleep, &mut pwait2)?;
        for ev in &events[..n] {
            let c = &mut cs[ev.u64 as usize];
            loop {
                if c.intended.is_none() || c.got == c.back.len() {
                    // Nothing is owed to this connection: any byte is wrong.
                    let mut one = [0u8; 1];
                    match c.s.read(&mut one) {
                        Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed")),
                        Ok(_) => return Err(io::Error::other("server sent bytes nobody asked for")),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                match c.s.read(&mut c.back[c.got..]) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed")),
                    Ok(k) => c.got += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
                if c.got == c.back.len() {
                    let at = Instant::now();
                    if c.back != c.expect {
                        return Err(io::Error::other("reply corrupted"));
                    }
                    let intended = c.intended.take().expect("a request is in flight");
                    if intended >= wstart {
                        hist.saturating_record((at - intended).as_nanos() as u64);
                        done += 1;
                    }
                    break;
                }
            }
        }
    }
    let cpu = super::sys::proc_cpu_ns(server_pid).saturating_sub(cpu0.unwrap_or(0));
    Ok(OpenSample {
        achieved: done as f64 / window.as_secs_f64(),
        cpu_us: cpu as f64 / 1e3 / done.max(1) as f64,
        hist,
    })
}

/// How close to a scheduled send the open-loop generator stops sleeping
/// and spins.
const SPIN: Duration = Duration::from_micros(30);

/// `epoll_pwait2` with a nanosecond timeout (Linux 5.11+); where it is
/// missing (`ENOSYS`, remembered in `pwait2`), `epoll_wait` with the timeout
/// rounded down to milliseconds, so the caller spins the rest. Returns the
/// number of ready events (0 on EINTR).
fn wait(ep: i32, events: &mut [libc::epoll_event], timeout: Duration, pwait2: &mut bool) -> io::Result<usize> {
    let max = events.len() as i32;
    let n = if timeout.is_zero() || !*pwait2 {
        let ms = timeout.as_millis().min(1000) as i32;
        // SAFETY: `events` has room for `max` entries.
        unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), max, ms) }
    } else {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `events` has room for `max` entries, `ts` outlives the
        // call, and a null sigmask means "do not change the mask".
        let r = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                ep,
                events.as_mut_ptr(),
                max,
                &ts as *const libc::timespec,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        } as i32;
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            *pwait2 = false;
            return Ok(0);
        }
        r
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(n as usize)
}

/// One `wrk` run against an HTTP server.
pub struct WrkSample {
    pub rps: f64,
    pub requests: u64,
    /// Closed-loop latency percentiles wrk reports (µs): p50, p99.
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_us: f64,
}

/// Whether `wrk` can be run; `Err` says why not.
pub fn wrk_available() -> Result<(), String> {
    match std::process::Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err("wrk not installed (Debian: apt-get install wrk); skipped".into())
        }
        Err(e) => Err(format!("cannot run wrk: {e}")),
    }
}

/// Parses a wrk latency such as `85.00us`, `1.20ms` or `2.00s` into µs.
fn wrk_time_us(v: &str) -> Option<f64> {
    let (num, mul) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * mul)
}

/// Runs `wrk -t<threads> -c<conns> -d<secs>s --latency` (inheriting this
/// thread's CPU pinning) and the server's CPU time over the run.
pub fn wrk(addr: SocketAddr, conns: usize, threads: usize, secs: u64, server_pid: u32) -> Result<WrkSample, String> {
    let c0 = super::sys::proc_cpu_ns(server_pid);
    let out = std::process::Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            &format!("http://{addr}/"),
        ])
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let c1 = super::sys::proc_cpu_ns(server_pid);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("wrk failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let mut s = WrkSample {
        rps: f64::NAN,
        requests: 0,
        p50_us: f64::NAN,
        p99_us: f64::NAN,
        cpu_us: f64::NAN,
    };
    for line in text.lines() {
        let t = line.trim();
        let w: Vec<&str> = t.split_whitespace().collect();
        if t.starts_with("Requests/sec:") {
            s.rps = w.get(1).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        } else if w.len() >= 3 && w[1] == "requests" && w[2] == "in" {
            s.requests = w[0].parse().unwrap_or(0);
        } else if w.len() == 2 && w[0] == "50%" {
            s.p50_us = wrk_time_us(w[1]).unwrap_or(f64::NAN);
        } else if w.len() == 2 && w[0] == "99%" {
            s.p99_us = wrk_time_us(w[1]).unwrap_or(f64::NAN);
        } else if t.starts_with("Non-2xx") || t.starts_with("Socket errors") {
            return Err(format!("wrk reported errors: {t}"));
        }
    }
    if s.requests == 0 {
        return Err(format!("wrk completed no request: {}", text.trim()));
    }
    s.cpu_us = (c1 - c0) as f64 / 1e3 / s.requests as f64;
    Ok(s)
}

/// Checks of the wrk output parser (run in smoke mode).
pub fn self_check() -> Result<(), String> {
    let cases = [("85.00us", 85.0), ("1.20ms", 1200.0), ("2.00s", 2e6)];
    for (v, want) in cases {
        let got = wrk_time_us(v).ok_or(format!("cannot parse {v}"))?;
        if (got - want).abs() > 1e-6 {
            return Err(format!("wrk_time_us({v}) = {got}, want {want}"));
        }
    }
    if wrk_time_us("abc").is_some() {
        return Err("wrk_time_us accepted garbage".into());
    }
    Ok(())
}
