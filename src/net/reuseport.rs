//! `SO_REUSEPORT` groups: steering each connection (or datagram) to the
//! socket of the CPU that handles it, with a classic-BPF program
//! (`SO_ATTACH_REUSEPORT_CBPF`, Linux 4.5+).
//!
//! The program returns the CPU number the packet is processed on; the
//! kernel uses it as the index of the socket in the group (sockets are
//! numbered in the order they joined the group). An index past the end
//! falls back to the kernel's hash. So with loop `i` pinned to CPU `i` and
//! its socket joining the group `i`-th (bind them in order, e.g. from one
//! thread with `std` and adopt them with `from_std` on each loop), the
//! loop that accepts a connection runs on the CPU its packets arrive on.

use std::io;
use std::os::fd::AsRawFd;

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic value; not in every `libc`).
#[cfg(target_os = "linux")]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Attaches the "socket index = current CPU" program to the reuseport
/// group of `sock` (one socket of the group is enough: the program is the
/// group's). `sock` must have `SO_REUSEPORT` set and be bound.
#[cfg(target_os = "linux")]
pub fn attach_reuseport_cpu_steering(sock: &impl AsRawFd) -> io::Result<()> {
    // A = the CPU number (ancillary load); return A.
    let mut prog = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: (libc::SKF_AD_OFF + libc::SKF_AD_CPU) as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: passes a pointer to a live sock_fprog (whose filter array
    // outlives the call) with its exact size; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Steering needs Linux's `SO_ATTACH_REUSEPORT_CBPF`.
#[cfg(not(target_os = "linux"))]
pub fn attach_reuseport_cpu_steering(_sock: &impl AsRawFd) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reuseport CPU steering needs Linux (SO_ATTACH_REUSEPORT_CBPF)",
    ))
}

/// Binds `n` TCP listeners on `addr` in one `SO_REUSEPORT` group, in
/// order (listener `i` is the group's socket `i`), optionally with CPU
/// steering attached. `addr` with port 0: the first listener picks the
/// port, the others bind to it. Adopt listener `i` on loop `i` with
/// [`TcpListener::from_std`](super::TcpListener::from_std).
pub fn reuseport_tcp_listeners(
    addr: std::net::SocketAddr,
    n: usize,
    backlog: i32,
    steer_by_cpu: bool,
) -> io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n.max(1) {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        sock.bind(&addr.into())?;
        sock.listen(backlog)?;
        let l = std::net::TcpListener::from(sock);
        addr = l.local_addr()?;
        out.push(l);
    }
    if steer_by_cpu {
        attach_reuseport_cpu_steering(&out[0])?;
    }
    Ok(out)
}
