//! compio echo server (io_uring driver).

use std::io;

use compio::io::{AsyncRead, AsyncWriteExt};

use super::BUF;

pub fn serve(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    let rt = compio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let l = compio::net::TcpListener::from_std(l)?;
        ready();
        loop {
            let (mut s, _) = l.accept().await?;
            compio::runtime::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = Vec::with_capacity(BUF);
                loop {
                    buf.clear();
                    let compio::BufResult(res, b) = s.read(buf).await;
                    if !matches!(res, Ok(n) if n > 0) {
                        return;
                    }
                    let compio::BufResult(res, b) = s.write_all(b).await;
                    if res.is_err() {
                        return;
                    }
                    buf = b;
                }
            })
            .detach();
        }
    })
}
