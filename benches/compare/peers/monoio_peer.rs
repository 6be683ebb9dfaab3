//! monoio echo server on its io_uring driver.

use std::io;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::BUF;

pub fn serve(l: std::net::TcpListener, ready: impl FnOnce() + 'static) -> io::Result<()> {
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .build()?;
    rt.block_on(async move {
        let l = monoio::net::TcpListener::from_std(l)?;
        ready();
        loop {
            let (mut s, _) = l.accept().await?;
            monoio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = Vec::with_capacity(BUF);
                loop {
                    buf.clear();
                    let (res, b) = s.read(buf).await;
                    if !matches!(res, Ok(n) if n > 0) {
                        return;
                    }
                    let (res, b) = s.write_all(b).await;
                    if res.is_err() {
                        return;
                    }
                    buf = b;
                }
            });
        }
    })
}
