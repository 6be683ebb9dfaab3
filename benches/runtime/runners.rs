//! Runners: a fresh loop / runtime per call, timing and result checks.

use super::*;

pub fn ringloop_loop(rt: Rt) -> Result<EventLoop, String> {
    let choice = match rt {
        Rt::Uring => DriverChoice::Uring,
        Rt::Fallback => DriverChoice::Fallback,
        _ => unreachable!("not a ringloop runtime"),
    };
    EventLoop::builder()
        .driver(choice)
        .build()
        .map_err(|e| format!("unavailable: {e}"))
}

pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Times `run_until_complete(fut)` on a fresh loop (loop setup and teardown
/// are not timed) and checks the result.
pub fn time_ringloop<Fut>(rt: Rt, expect: u64, fut: Fut) -> Sample
where
    Fut: Future<Output = u64> + 'static,
{
    let lp = ringloop_loop(rt)?;
    let t0 = Instant::now();
    let out = lp.run_until_complete(fut).map_err(|e| e.to_string())?;
    let dt = t0.elapsed();
    check(out, expect)?;
    drop(lp);
    Ok(dt)
}

/// Times `fut` run as a task on a fresh tokio current_thread runtime:
/// `spawn_local` on a `LocalSet` for [`Rt::TokioLocal`].
pub fn time_tokio_local<Fut>(expect: u64, fut: Fut) -> Sample
where
    Fut: Future<Output = u64> + 'static,
{
    let rt = tokio_rt();
    let local = tokio::task::LocalSet::new();
    let t0 = Instant::now();
    let out = local.block_on(&rt, async move { tokio::task::spawn_local(fut).await.expect("join") });
    let dt = t0.elapsed();
    check(out, expect)?;
    drop(local);
    drop(rt);
    Ok(dt)
}

/// Like [`time_tokio_local`] with `tokio::spawn` ([`Rt::TokioSpawn`]).
pub fn time_tokio_spawn<Fut>(expect: u64, fut: Fut) -> Sample
where
    Fut: Future<Output = u64> + Send + 'static,
{
    let rt = tokio_rt();
    let t0 = Instant::now();
    let out = rt.block_on(async move { tokio::spawn(fut).await.expect("join") });
    let dt = t0.elapsed();
    check(out, expect)?;
    drop(rt);
    Ok(dt)
}

pub fn check(out: u64, expect: u64) -> Result<(), String> {
    if black_box(out) == expect {
        Ok(())
    } else {
        Err(format!("wrong result {out}, expected {expect}"))
    }
}

pub fn not_run(rt: Rt) -> Sample {
    Err(format!("{} is not a runtime of this benchmark", rt.id()))
}
