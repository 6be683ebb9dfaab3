//! ringloop echo server (either backend).

use std::io;

use super::BUF;

pub fn serve(
    l: std::net::TcpListener,
    driver: ringloop::DriverChoice,
    ready: impl FnOnce() + 'static,
) -> io::Result<()> {
    let lp = ringloop::EventLoop::builder().driver(driver).build()?;
    lp.run_until_complete(async move {
        let l = ringloop::net::TcpListener::from_std(l)?;
        ready();
        loop {
            let (s, _) = l.accept().await?;
            ringloop::spawn(async move {
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
            })
            .detach();
        }
    })?
}
