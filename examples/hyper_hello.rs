//! Hello-world HTTP server with hyper on ringloop: HTTP/1.1 and HTTP/2
//! (h2c, prior knowledge) on one port, graceful shutdown on Ctrl+C.
//!
//! ```sh
//! cargo run --example hyper_hello --features hyper -- 127.0.0.1:3000
//! curl http://127.0.0.1:3000/                       # HTTP/1.1
//! curl --http2-prior-knowledge http://127.0.0.1:3000/  # HTTP/2
//! cargo run --example hyper_client --features hyper -- http://127.0.0.1:3000/ --http2
//! ```
//!
//! Prints `listening on ADDR (BACKEND)`, answers `Hello, world! (HTTP/x)`
//! and a request counter kept in an `Rc<Cell>` (services need not be
//! `Send`), and on SIGINT stops accepting, lets open requests finish and
//! prints `shut down after N requests`.

use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use ringloop::EventLoop;
use ringloop::net::TcpListener;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let addr: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {addr:?}: {e}")))?;
    let lp = EventLoop::new()?;
    let kind = lp.driver_kind();
    lp.run_until_complete(async move {
        // Installed first: from here on Ctrl+C stops the server gracefully.
        let ctrl_c = ringloop::signal::ctrl_c();
        let listener = TcpListener::bind(addr)?;
        println!("listening on {} ({kind})", listener.local_addr()?);
        let count = Rc::new(Cell::new(0u64));
        let counter = count.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let count = counter.clone();
            async move {
                count.set(count.get() + 1);
                let text = format!("Hello, world! ({:?}, request #{})\n", req.version(), count.get());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
            }
        });
        ringloop::hyper::serve(&listener, svc, async move {
            let _ = ctrl_c.await;
        })
        .await?;
        println!("shut down after {} requests", count.get());
        Ok(())
    })?
}
