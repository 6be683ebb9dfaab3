//! asyncio's protocols and transports (`ringloop::protocols`) on both
//! backends: callback order, the echo protocol pair of asyncio's docs,
//! write-side flow control (`pause_writing` / `resume_writing`),
//! `pause_reading`, `abort`, typed errors, datagram endpoints, and a Python
//! asyncio client against a protocol server.

mod common;

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use ringloop::EventLoop;
use ringloop::protocols::{
    DatagramProtocol, DatagramTransport, Protocol, Transport, TransportError, create_connection,
    create_datagram_endpoint, create_server,
};

type Log = Rc<RefCell<Vec<String>>>;

/// Reads `s` to its end.
async fn read_all(s: &ringloop::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let (r, buf) = ringloop::AsyncReadOwned::read(s, Vec::with_capacity(1 << 16)).await;
        if r.unwrap() == 0 {
            return out;
        }
        out.extend_from_slice(&buf);
    }
}

/// asyncio's EchoServerProtocol: echoes, and closes on EOF.
struct EchoServer {
    transport: Option<Transport>,
    log: Log,
}

impl Protocol for EchoServer {
    fn connection_made(&mut self, transport: &Transport) {
        self.log.borrow_mut().push("made".into());
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        self.transport.as_ref().unwrap().write(data).unwrap();
    }
    fn eof_received(&mut self) -> bool {
        self.log.borrow_mut().push("eof".into());
        false
    }
    fn connection_lost(&mut self, err: Option<io::Error>) {
        self.log.borrow_mut().push(format!("lost {:?}", err.map(|e| e.kind())));
    }
}

/// A client that records everything that happens to it.
#[derive(Default)]
struct Recorder {
    transport: Option<Transport>,
    events: Vec<String>,
    data: Vec<u8>,
}

impl Protocol for Recorder {
    fn connection_made(&mut self, transport: &Transport) {
        self.events.push("made".into());
        self.transport = Some(transport.clone());
    }
    fn data_received(&mut self, data: &[u8]) {
        assert!(!data.is_empty(), "data_received is never called with no bytes");
        if self.events.last().map(String::as_str) != Some("data") {
            self.events.push("data".into());
        }
        self.data.extend_from_slice(data);
    }
    fn eof_received(&mut self) -> bool {
        self.events.push("eof".into());
        false
    }
    fn connection_lost(&mut self, err: Option<io::Error>) {
        self.events.push(format!("lost {:?}", err.map(|e| e.kind())));
    }
    fn pause_writing(&mut self) {
        self.events.push("pause_writing".into());
    }
    fn resume_writing(&mut self) {
        self.events.push("resume_writing".into());
    }
}

#[ringloop::test]
fn echo_protocol_pair_calls_back_in_asyncio_order(lp: &EventLoop) {
    lp.run_until_complete(async {
        let log: Log = Rc::default();
        let log2 = log.clone();
        let server = create_server(
            move || EchoServer {
                transport: None,
                log: log2.clone(),
            },
            "127.0.0.1:0",
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (t, client) = create_connection(Recorder::default, addr).await.unwrap();
        assert_eq!(
            client.borrow().events,
            ["made"],
            "connection_made runs before returning"
        );
        assert_eq!(t.peername().and_then(|a| a.as_inet()), Some(addr));
        t.write(b"Hello ").unwrap();
        t.writelines([&b"World"[..], b"!"]).unwrap();
        t.write_eof().unwrap();
        assert_eq!(t.write(b"more"), Err(TransportError::WriteAfterEof));
        t.wait_closed().await;
        {
            let c = client.borrow();
            assert_eq!(c.data, b"Hello World!");
            assert_eq!(c.events, ["made", "data", "eof", "lost None"]);
        }
        assert_eq!(
            t.write(b"x"),
            Err(TransportError::WriteAfterEof),
            "still after the loss"
        );
        server.close();
        server.wait_closed().await;
        assert_eq!(*log.borrow(), ["made", "eof", "lost None"]);
    })
    .unwrap();
}

#[ringloop::test]
fn close_sends_the_buffer_first_and_abort_discards_it(lp: &EventLoop) {
    lp.run_until_complete(async {
        let log: Log = Rc::default();
        let log2 = log.clone();
        let server = create_server(
            move || EchoServer {
                transport: None,
                log: log2.clone(),
            },
            "127.0.0.1:0",
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();

        // close(): the buffered bytes go out, then connection_lost(None).
        let listener = ringloop::net::TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
        let laddr = listener.local_addr().unwrap();
        let (t, client) = create_connection(Recorder::default, laddr).await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        let data = vec![7u8; 300_000];
        t.write(&data).unwrap();
        t.close();
        assert!(t.is_closing());
        assert!(!t.is_reading());
        t.close(); // idempotent
        let got = read_all(&peer).await;
        assert!(got == data, "close() flushed all {} bytes", data.len());
        t.wait_closed().await;
        assert_eq!(client.borrow().events.last().unwrap(), "lost None");
        assert!(client.borrow().events.iter().filter(|e| e.starts_with("lost")).count() == 1);

        // abort(): connection_lost(None) without sending the buffer.
        let (t, client) = create_connection(Recorder::default, addr).await.unwrap();
        t.abort();
        assert!(t.write(b"x").is_err());
        t.wait_closed().await;
        assert_eq!(client.borrow().events, ["made", "lost None"]);
        server.close();
        server.wait_closed().await;
    })
    .unwrap();
}

#[ringloop::test]
fn write_buffer_limits_drive_pause_and_resume_writing(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = ringloop::net::TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
        let (t, client) = create_connection(Recorder::default, listener.local_addr().unwrap())
            .await
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        assert_eq!(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
        assert_eq!(
            t.set_write_buffer_limits(Some(10), Some(20)),
            Err(TransportError::InvalidLimits { high: 10, low: 20 })
        );
        t.set_write_buffer_limits(Some(4096), None).unwrap();
        assert_eq!(t.get_write_buffer_limits(), (1024, 4096));
        t.set_write_buffer_limits(None, Some(100)).unwrap();
        assert_eq!(t.get_write_buffer_limits(), (100, 400));
        t.set_write_buffer_limits(None, None).unwrap();

        t.write(&[1u8; 1000]).unwrap();
        assert_eq!(client.borrow().events, ["made"], "below the high-water mark");
        let big = vec![2u8; 8 << 20];
        t.write(&big).unwrap();
        assert_eq!(
            client.borrow().events,
            ["made", "pause_writing"],
            "crossing it pauses at once"
        );
        t.write(b"x").unwrap();
        assert_eq!(client.borrow().events.len(), 2, "pause_writing is called once");
        assert!(t.get_write_buffer_size() > 64 * 1024);
        // The peer does not read: the buffer cannot drain.
        ringloop::sleep(Duration::from_millis(30)).await;
        assert_eq!(client.borrow().events, ["made", "pause_writing"]);
        let total = 1000 + big.len() + 1;
        let mut got = 0;
        while got < total {
            let (r, _) = ringloop::AsyncReadOwned::read(&peer, Vec::with_capacity(1 << 16)).await;
            got += r.unwrap();
        }
        while client.borrow().events.len() < 3 {
            ringloop::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(client.borrow().events, ["made", "pause_writing", "resume_writing"]);
        assert_eq!(t.get_write_buffer_size(), 0);
        t.close();
        t.wait_closed().await;
    })
    .unwrap();
}

/// A protocol that writes past the high-water mark from inside a callback:
/// `pause_writing` must follow the callback, not re-enter it.
struct WritesInCallback {
    transport: Option<Transport>,
    events: Vec<&'static str>,
}

impl Protocol for WritesInCallback {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(&vec![0u8; 200_000]).unwrap();
        self.events.push("made");
        self.transport = Some(transport.clone());
    }
    fn pause_writing(&mut self) {
        self.events.push("pause_writing");
    }
    fn resume_writing(&mut self) {
        self.events.push("resume_writing");
        self.transport.as_ref().unwrap().close();
    }
}

#[ringloop::test]
fn pause_writing_caused_inside_a_callback_comes_right_after_it(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = ringloop::net::TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
        let connect = create_connection(
            || WritesInCallback {
                transport: None,
                events: Vec::new(),
            },
            listener.local_addr().unwrap(),
        );
        let (res, accepted) = futures_util::future::join(connect, listener.accept()).await;
        let (t, p) = res.unwrap();
        let (peer, _) = accepted.unwrap();
        assert_eq!(p.borrow().events, ["made", "pause_writing"]);
        let got = read_all(&peer).await;
        assert_eq!(got.len(), 200_000);
        t.wait_closed().await;
        assert_eq!(p.borrow().events, ["made", "pause_writing", "resume_writing"]);
    })
    .unwrap();
}

#[ringloop::test]
fn pause_reading_holds_data_received_until_resume(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = ringloop::net::TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
        let (t, client) = create_connection(Recorder::default, listener.local_addr().unwrap())
            .await
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        t.pause_reading();
        assert!(!t.is_reading());
        let (r, _) = ringloop::AsyncWriteOwned::write_all(&peer, b"while paused".to_vec()).await;
        r.unwrap();
        ringloop::sleep(Duration::from_millis(30)).await;
        assert!(client.borrow().data.is_empty(), "no data_received while paused");
        t.resume_reading();
        assert!(t.is_reading());
        while client.borrow().data.len() < 12 {
            ringloop::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(client.borrow().data, b"while paused");
        drop(peer);
        t.wait_closed().await;
        assert_eq!(client.borrow().events, ["made", "data", "eof", "lost None"]);
    })
    .unwrap();
}

#[ringloop::test]
fn a_reset_connection_reports_its_error_to_connection_lost(lp: &EventLoop) {
    lp.run_until_complete(async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (t, client) = create_connection(Recorder::default, listener.local_addr().unwrap())
            .await
            .unwrap();
        let (peer, _) = listener.accept().unwrap();
        // SO_LINGER 0 makes close() send RST.
        let sock = ringloop::net::TcpStream::from_std(peer).unwrap();
        sock.set_linger(Some(Duration::ZERO)).unwrap();
        drop(sock);
        t.wait_closed().await;
        let events = client.borrow().events.clone();
        assert_eq!(events, ["made", "lost Some(ConnectionReset)"]);
    })
    .unwrap();
}

// ------------------------------------------------------------ datagrams

struct UdpEcho {
    transport: Option<DatagramTransport>,
}

impl DatagramProtocol for UdpEcho {
    fn connection_made(&mut self, transport: &DatagramTransport) {
        self.transport = Some(transport.clone());
    }
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        self.transport.as_ref().unwrap().sendto(data, Some(addr)).unwrap();
    }
}

#[derive(Default)]
struct UdpClient {
    got: Vec<(Vec<u8>, SocketAddr)>,
    errors: Vec<io::ErrorKind>,
    lost: usize,
}

impl DatagramProtocol for UdpClient {
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        self.got.push((data.to_vec(), addr));
    }
    fn error_received(&mut self, err: io::Error) {
        self.errors.push(err.kind());
    }
    fn connection_lost(&mut self, err: Option<io::Error>) {
        assert!(err.is_none());
        self.lost += 1;
    }
}

#[ringloop::test]
fn datagram_echo_endpoints_keep_boundaries(lp: &EventLoop) {
    lp.run_until_complete(async {
        let (st, _) = create_datagram_endpoint(
            || UdpEcho { transport: None },
            Some("127.0.0.1:0".parse().unwrap()),
            None,
        )
        .await
        .unwrap();
        let Some(ringloop::protocols::ExtraInfo::Address(a)) = st.get_extra_info("sockname") else {
            panic!("no sockname")
        };
        let saddr = a.as_inet().unwrap();
        let (ct, client) = create_datagram_endpoint(UdpClient::default, None, Some(saddr))
            .await
            .unwrap();
        for m in [&b"first"[..], b"", &[9u8; 1200]] {
            ct.sendto(m, None).unwrap();
        }
        while client.borrow().got.len() < 3 {
            ringloop::sleep(Duration::from_millis(1)).await;
        }
        {
            let c = client.borrow();
            let msgs: Vec<&[u8]> = c.got.iter().map(|(d, _)| &d[..]).collect();
            assert_eq!(msgs, [&b"first"[..], b"", &[9u8; 1200]]);
            assert!(c.got.iter().all(|(_, from)| *from == saddr));
        }
        ct.close();
        assert_eq!(ct.sendto(b"late", None), Err(TransportError::Closed));
        ct.wait_closed().await;
        assert_eq!(client.borrow().lost, 1);
        st.close();
        st.wait_closed().await;
    })
    .unwrap();
}

#[ringloop::test]
fn datagram_send_to_a_closed_port_goes_to_error_received(lp: &EventLoop) {
    lp.run_until_complete(async {
        // A port nobody else takes meanwhile and nothing of ours reaches.
        let (_held, addr) = common::refusing_udp_port();
        let (t, client) = create_datagram_endpoint(UdpClient::default, None, Some(addr))
            .await
            .unwrap();
        // The ICMP port-unreachable of one send makes a later send or
        // receive fail with ECONNREFUSED; the endpoint stays open.
        for _ in 0..200 {
            if !client.borrow().errors.is_empty() {
                break;
            }
            t.sendto(b"anyone?", None).unwrap();
            ringloop::sleep(Duration::from_millis(2)).await;
        }
        assert!(client.borrow().errors.contains(&io::ErrorKind::ConnectionRefused));
        assert!(!t.is_closing());
        t.abort();
        t.wait_closed().await;
        assert_eq!(client.borrow().lost, 1);
    })
    .unwrap();
}

// ------------------------------------------------------------ Python interop

const PY_CLIENT: &str = r#"
import asyncio, sys
class Client(asyncio.Protocol):
    def __init__(self, done):
        self.done, self.data, self.events = done, b'', []
    def connection_made(self, t):
        self.events.append('made')
        t.write(b'Hello from Python ' * 1000)
        t.write_eof()
    def data_received(self, d):
        self.data += d
    def eof_received(self):
        self.events.append('eof')
    def connection_lost(self, exc):
        self.events.append(f'lost {exc}')
        self.done.set_result(None)
async def main(port):
    done = asyncio.get_running_loop().create_future()
    t, p = await asyncio.get_running_loop().create_connection(lambda: Client(done), '127.0.0.1', port)
    await done
    assert p.data == b'Hello from Python ' * 1000, len(p.data)
    print(len(p.data), p.events)
asyncio.run(main(int(sys.argv[1])))
"#;

#[ringloop::test]
fn python_asyncio_protocol_client_against_a_ringloop_echo_protocol_server(lp: &EventLoop) {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: python3 not found; the Python interop test needs it");
        return;
    }
    lp.run_until_complete(async {
        let log: Log = Rc::default();
        let log2 = log.clone();
        let server = create_server(
            move || EchoServer {
                transport: None,
                log: log2.clone(),
            },
            "127.0.0.1:0",
        )
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port().to_string();
        let out = ringloop::process::Command::new("python3")
            .args(["-c", PY_CLIENT, &port])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "python client failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout, "18000 ['made', 'eof', 'lost None']\n");
        server.close();
        server.wait_closed().await;
        assert_eq!(*log.borrow(), ["made", "eof", "lost None"]);
    })
    .unwrap();
}
