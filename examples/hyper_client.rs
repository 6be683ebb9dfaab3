//! A hyper client on ringloop: GET a URL over HTTP/1.1 or HTTP/2, plain or
//! TLS (HTTPS needs `--features tls`).
//!
//! ```sh
//! cargo run --example hyper_client --features hyper -- http://127.0.0.1:3000/ [--http2] [--repeat N]
//! cargo run --example hyper_client --features hyper,tls -- https://localhost:3443/ --cacert ca.pem
//! ```
//!
//! Prints `status`, `version` and the body of each response. `--repeat N`
//! sends N requests over the same connection (keep-alive / one HTTP/2
//! connection). For HTTPS, `--cacert` is the PEM file of the CA to trust
//! (there is no system trust store here); ALPN asks for `h2` with
//! `--http2`, else `http/1.1`.

use std::io;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, Response, Uri};
use ringloop::net::TcpStream;

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn send(&mut self, req: Request<Empty<Bytes>>) -> hyper::Result<Response<hyper::body::Incoming>> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
    }
}

async fn handshake<S>(io: S, http2: bool) -> io::Result<Sender>
where
    S: futures_io::AsyncBufRead + futures_io::AsyncWrite + Unpin + 'static,
{
    Ok(if http2 {
        Sender::H2(ringloop::hyper::http2_handshake(io).await.map_err(io::Error::other)?)
    } else {
        Sender::H1(ringloop::hyper::http1_handshake(io).await.map_err(io::Error::other)?)
    })
}

fn usage() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: hyper_client URL [--http2] [--repeat N] [--cacert PEM]",
    )
}

fn main() -> io::Result<()> {
    let mut url = None;
    let mut http2 = false;
    let mut repeat = 1u32;
    let mut cacert: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--http2" => http2 = true,
            "--repeat" => repeat = args.next().and_then(|n| n.parse().ok()).ok_or_else(usage)?,
            "--cacert" => cacert = Some(args.next().ok_or_else(usage)?),
            _ if url.is_none() => url = Some(a),
            _ => return Err(usage()),
        }
    }
    let uri: Uri = url
        .ok_or_else(usage)?
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or_else(usage)?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });

    ringloop::run(async move {
        let tcp = TcpStream::connect((host.clone(), port)).await?;
        let _ = tcp.set_nodelay(true);
        let mut sender = if https {
            tls_handshake(tcp, &host, cacert, http2).await?
        } else {
            handshake(tcp, http2).await?
        };
        for _ in 0..repeat {
            let mut req = Request::get(uri.clone());
            if !http2 {
                // HTTP/1.1 sends the path only; the host goes in `Host`.
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                req = Request::get(path).header(hyper::header::HOST, format!("{host}:{port}"));
            }
            let req = req.body(Empty::new()).map_err(io::Error::other)?;
            let resp = sender.send(req).await.map_err(io::Error::other)?;
            println!("status: {}", resp.status());
            println!("version: {:?}", resp.version());
            let body = resp.into_body().collect().await.map_err(io::Error::other)?.to_bytes();
            print!("{}", String::from_utf8_lossy(&body));
        }
        Ok(())
    })?
}

#[cfg(feature = "tls")]
async fn tls_handshake(tcp: TcpStream, host: &str, cacert: Option<String>, http2: bool) -> io::Result<Sender> {
    let roots = ringloop::tls::load_certs(cacert.ok_or_else(usage)?)?;
    let alpn: &[&[u8]] = if http2 { &[b"h2"] } else { &[b"http/1.1"] };
    let connector = ringloop::tls::TlsConnector::new(ringloop::tls::client_config(roots, alpn)?);
    let tls = connector.connect(host, tcp).await?;
    handshake(tls, http2).await
}

#[cfg(not(feature = "tls"))]
async fn tls_handshake(_: TcpStream, _: &str, _: Option<String>, _: bool) -> io::Result<Sender> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "https:// needs the `tls` feature (cargo run --features hyper,tls ...)",
    ))
}
