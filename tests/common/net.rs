//! Helpers of the network fault, stress and cancellation tests: a seeded
//! PRNG, a streaming checksum, RLIMIT_NOFILE handling and an echo server. (Racing and joining
//! futures: `futures_util::future::{select, join}`; polling once:
//! `futures_util::poll!`.)

use ringloop::{AsyncReadOwned, AsyncWriteOwned};

use ringloop::net::{TcpListener, TcpStream};

/// xorshift64*: tiny, deterministic, good enough to pick random points.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }
    /// A seed from `RINGLOOP_TEST_SEED` or the clock (print it!).
    pub fn seed_from_env() -> u64 {
        match std::env::var("RINGLOOP_TEST_SEED") {
            Ok(s) => s.parse().expect("RINGLOOP_TEST_SEED must be a u64"),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        }
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Fills `buf` with pseudo-random bytes, 8 at a time.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// A streaming FNV-1a-style checksum over 64-bit words (fast enough in debug
/// builds for 100 MiB): the result depends only on the byte sequence, not on
/// how it was split into `update` calls.
#[derive(Clone, Debug)]
pub struct Checksum {
    state: u64,
    pending: [u8; 8],
    npending: usize,
    len: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            state: 0xcbf2_9ce4_8422_2325,
            pending: [0; 8],
            npending: 0,
            len: 0,
        }
    }
}

impl Checksum {
    fn word(&mut self, w: u64) {
        self.state = (self.state ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.npending > 0 {
            let take = (8 - self.npending).min(data.len());
            self.pending[self.npending..self.npending + take].copy_from_slice(&data[..take]);
            self.npending += take;
            data = &data[take..];
            if self.npending < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.pending));
            self.npending = 0;
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.npending = rest.len();
    }
    /// (checksum, total length).
    pub fn finish(&self) -> (u64, u64) {
        let mut s = self.clone();
        if s.npending > 0 {
            let mut last = [0u8; 8];
            last[..s.npending].copy_from_slice(&s.pending[..s.npending]);
            s.word(u64::from_le_bytes(last) ^ (s.npending as u64) << 60);
        }
        s.word(s.len);
        (s.state, s.len)
    }
}

/// (soft, hard) RLIMIT_NOFILE.
pub fn nofile_limit() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the valid local struct.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    (r.rlim_cur, r.rlim_max)
}

/// Sets the soft RLIMIT_NOFILE (the hard limit is kept).
pub fn set_nofile_soft(soft: u64) -> std::io::Result<()> {
    let (_, hard) = nofile_limit();
    let r = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the valid local struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft fd limit towards `wanted` (capped by the hard limit) and
/// returns the soft limit now in force.
pub fn raise_nofile_to(wanted: u64) -> u64 {
    let (soft, hard) = nofile_limit();
    if soft >= wanted {
        return soft;
    }
    let target = wanted.min(hard);
    if let Err(e) = set_nofile_soft(target) {
        eprintln!("could not raise RLIMIT_NOFILE from {soft} to {target}: {e}");
        return soft;
    }
    target
}

/// An echo server: every accepted connection echoes until EOF or an error.
pub async fn echo_server(listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // E.g. EMFILE: report it and keep serving.
                eprintln!("echo server: accept failed: {e}");
                ringloop::sleep(std::time::Duration::from_millis(1)).await;
                continue;
            }
        };
        ringloop::spawn(echo_connection(stream)).detach();
    }
}

/// Echoes one connection until EOF or an error (64 KiB reads).
pub async fn echo_connection(stream: TcpStream) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let (res, b) = stream.read(buf).await;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (res, b) = stream.write_all(b).await;
        if res.is_err() {
            return;
        }
        buf = b;
    }
}

/// A listener on an ephemeral loopback port.
pub fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap()
}
