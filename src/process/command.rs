//! [`Command`]: the process builder.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::Path;
use std::rc::{Rc, Weak};

use super::reap;
use super::{Child, ExitStatus, Output, Stdio};
use crate::io::current_driver;

/// A process builder: [`std::process::Command`] with asynchronous
/// [`spawn`](Command::spawn), [`output`](Command::output) and
/// [`status`](Command::status).
///
/// Standard streams default to inherit for `spawn` and `status`; `output`
/// pipes stdout and stderr and gives the child a null stdin unless they were
/// set (as `std` does).
pub struct Command {
    std: std::process::Command,
    kill_on_drop: bool,
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.std.fmt(f)
    }
}

impl From<std::process::Command> for Command {
    fn from(std: std::process::Command) -> Command {
        Command {
            std,
            kill_on_drop: false,
            // The std command's stdio settings are unknown: keep them.
            stdin_set: true,
            stdout_set: true,
            stderr_set: true,
        }
    }
}

impl Command {
    /// A command for `program` (looked up in `PATH` if it has no `/`).
    pub fn new<S: AsRef<OsStr>>(program: S) -> Command {
        Command {
            std: std::process::Command::new(program),
            kill_on_drop: false,
            stdin_set: false,
            stdout_set: false,
            stderr_set: false,
        }
    }

    /// Adds an argument.
    pub fn arg<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Command {
        self.std.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.std.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(&mut self, key: K, val: V) -> &mut Command {
        self.std.env(key, val);
        self
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.std.envs(vars);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove<K: AsRef<OsStr>>(&mut self, key: K) -> &mut Command {
        self.std.env_remove(key);
        self
    }

    /// Clears the environment (nothing is inherited).
    pub fn env_clear(&mut self) -> &mut Command {
        self.std.env_clear();
        self
    }

    /// Sets the working directory.
    pub fn current_dir<P: AsRef<Path>>(&mut self, dir: P) -> &mut Command {
        self.std.current_dir(dir);
        self
    }

    /// The child's stdin: [`Stdio::piped()`] gives [`Child::stdin`].
    pub fn stdin<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// The child's stdout: [`Stdio::piped()`] gives [`Child::stdout`].
    pub fn stdout<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// The child's stderr: [`Stdio::piped()`] gives [`Child::stderr`].
    pub fn stderr<T: Into<Stdio>>(&mut self, cfg: T) -> &mut Command {
        self.std.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// Whether dropping the [`Child`] sends it SIGKILL (default: no, it
    /// keeps running and is reaped when it exits).
    pub fn kill_on_drop(&mut self, on: bool) -> &mut Command {
        self.kill_on_drop = on;
        self
    }

    /// The wrapped std command (for options ringloop does not mirror, e.g.
    /// `std::os::unix::process::CommandExt`).
    pub fn as_std(&self) -> &std::process::Command {
        &self.std
    }

    /// Mutable access to the wrapped std command. Stdio set through it is
    /// not seen by [`output`](Command::output)'s defaults.
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.std
    }

    /// Starts the process. Needs an open loop on this thread (checked before
    /// anything starts). A program that cannot be found is `NotFound`, one
    /// that cannot be executed `PermissionDenied`.
    pub fn spawn(&mut self) -> io::Result<Child> {
        let drv = current_driver()?;
        let lp = crate::runtime::current_inner().map_or_else(Weak::new, |lp| Rc::downgrade(&lp));
        reap::reap_orphans();
        let child = self.std.spawn()?;
        Child::adopt(child, drv, lp, self.kill_on_drop)
    }

    /// Runs the process to completion, collecting stdout and stderr (piped
    /// unless set; stdin is null unless set).
    pub async fn output(&mut self) -> io::Result<Output> {
        let (stdin, stdout, stderr) = (!self.stdin_set, !self.stdout_set, !self.stderr_set);
        if stdin {
            self.std.stdin(Stdio::null());
        }
        if stdout {
            self.std.stdout(Stdio::piped());
        }
        if stderr {
            self.std.stderr(Stdio::piped());
        }
        let child = self.spawn();
        // Back to the spawn defaults (inherit).
        if stdin {
            self.std.stdin(Stdio::inherit());
        }
        if stdout {
            self.std.stdout(Stdio::inherit());
        }
        if stderr {
            self.std.stderr(Stdio::inherit());
        }
        child?.wait_with_output().await
    }

    /// Runs the process to completion (streams inherited unless set) and
    /// returns its exit status.
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.spawn()?;
        // A piped stdin would only make a reading child wait: close it.
        drop(child.stdin.take());
        child.wait().await
    }
}
