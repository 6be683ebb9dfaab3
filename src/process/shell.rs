//! asyncio's `create_subprocess_shell`: a command line run by `/bin/sh -c`.

use std::ffi::OsStr;
use std::io;

use super::{Child, Command, Stdio};

/// A [`Command`] that runs `cmd` through the shell (`/bin/sh -c cmd`),
/// to configure further before `spawn` / `output`.
///
/// The command line is interpreted by the shell: quote anything that comes
/// from outside (asyncio's docs give the same warning).
pub fn shell<S: AsRef<OsStr>>(cmd: S) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(cmd);
    c
}

/// Starts `cmd` through the shell with the given stdio (asyncio's
/// `create_subprocess_shell(cmd, stdin=, stdout=, stderr=)`); use
/// `Stdio::piped()` to talk to it through [`Child`]'s pipes.
///
/// ```
/// use ringloop::process::{Stdio, create_subprocess_shell};
///
/// ringloop::run(async {
///     let mut child =
///         create_subprocess_shell("echo hello; exit 3", Stdio::null(), Stdio::piped(), Stdio::inherit()).unwrap();
///     let out = child.output().await.unwrap();
///     assert_eq!(out.stdout, b"hello\n");
///     assert_eq!(out.status.code(), Some(3));
/// })
/// .unwrap();
/// ```
pub fn create_subprocess_shell<S: AsRef<OsStr>>(
    cmd: S,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
) -> io::Result<Child> {
    shell(cmd).stdin(stdin).stdout(stdout).stderr(stderr).spawn()
}
