//! HTTPS hello-world server: hyper over rustls on ringloop, HTTP/2 or
//! HTTP/1.1 chosen by ALPN, graceful shutdown on Ctrl+C.
//!
//! ```sh
//! cargo run --example https_hello --features hyper,tls -- 127.0.0.1:3443 cert.pem key.pem
//! curl --cacert ca.pem https://localhost:3443/
//! ```
//!
//! `cert.pem` is the server's certificate chain (leaf first) and `key.pem`
//! its private key, both PEM (e.g. made with `openssl req -x509 ...` or
//! mkcert). Prints `listening on ADDR (BACKEND)`; each answer names the
//! HTTP version; SIGINT stops it after the open requests are done.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use ringloop::EventLoop;
use ringloop::net::TcpListener;
use ringloop::tls;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, cert, key] = args.as_slice() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: https_hello ADDR CERT.pem KEY.pem",
        ));
    };
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {addr:?}: {e}")))?;
    let config = tls::server_config(
        tls::load_certs(cert)?,
        tls::load_private_key(key)?,
        &[b"h2", b"http/1.1"],
    )?;
    let acceptor = tls::TlsAcceptor::new(config);
    let lp = EventLoop::new()?;
    let kind = lp.driver_kind();
    lp.run_until_complete(async move {
        let ctrl_c = ringloop::signal::ctrl_c();
        let listener = TcpListener::bind(addr)?;
        println!("listening on {} ({kind})", listener.local_addr()?);
        let svc = service_fn(|req: Request<Incoming>| async move {
            let text = format!("Hello over TLS! ({:?})\n", req.version());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
        });
        ringloop::hyper::serve_tls(&listener, acceptor, svc, async move {
            let _ = ctrl_c.await;
        })
        .await?;
        println!("shut down");
        Ok(())
    })?
}
