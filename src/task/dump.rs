//! The task dump: a snapshot of a loop's pending tasks (see
//! `EventLoop::task_dump`), in the spirit of asyncio's `all_tasks()` plus
//! `Task.print_stack()`, without stacks: Rust futures have no frames to
//! walk, so each task tells where it was spawned and what ringloop future
//! its latest step waited on.

use std::fmt;
use std::panic::Location;

use super::TaskRef;

/// Where a task is in its life, as the task dump sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskState {
    /// Its step is executing now (the dump was taken from inside it, or
    /// from something it runs).
    Running,
    /// Woken: it sits in the ready queue and runs in this or the next
    /// iteration.
    Scheduled,
    /// Pending, waiting for a wake-up (see [`TaskInfo::waiting_on`]).
    Waiting,
    /// Finished, cancelled or panicked.
    Done,
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Running => "running",
            TaskState::Scheduled => "scheduled",
            TaskState::Waiting => "waiting",
            TaskState::Done => "done",
        })
    }
}

/// One task of a [`TaskDump`] (or [`TaskRef::info`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TaskInfo {
    /// The task's id.
    pub id: u64,
    /// The task's name (`Task-<id>` unless set).
    pub name: String,
    /// Running, scheduled, waiting or done.
    pub state: TaskState,
    /// Where it was spawned (the caller of `spawn`, `create_task`,
    /// `run_until_complete`, `gather`, `TaskGroup::spawn`, ...).
    pub spawned_at: &'static Location<'static>,
    /// What the ringloop future its latest step last left pending waits for:
    /// `"sleep"`, `"task"` (awaiting another task), `"gather"`, `"blocking job"`,
    /// `"future"` (a `LoopFuture`), or the I/O operation's name (`"Recv"`,
    /// `"Accept"`, ...). `None` when no ringloop future said (e.g. a
    /// `sync` primitive or a foreign future), or before its first step.
    pub waiting_on: Option<&'static str>,
    /// Whether a cancellation was requested and not yet delivered.
    pub cancelling: bool,
}

impl fmt::Display for TaskInfo {
    /// One line: `task 7 "fetcher": waiting on sleep, spawned at src/main.rs:12:5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} {:?}: {}", self.id, self.name, self.state)?;
        if let (TaskState::Waiting | TaskState::Scheduled, Some(w)) = (self.state, self.waiting_on) {
            let verb = if self.state == TaskState::Waiting {
                "on"
            } else {
                "after"
            };
            write!(f, " {verb} {w}")?;
        }
        if self.cancelling {
            f.write_str(" (cancelling)")?;
        }
        write!(f, ", spawned at {}", self.spawned_at)
    }
}

/// A snapshot of a loop's pending tasks, in spawn order; its `Display`
/// prints one line per task (see [`TaskInfo`]).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TaskDump {
    /// The tasks, by increasing id.
    pub tasks: Vec<TaskInfo>,
}

impl TaskDump {
    /// A dump of `tasks` (sorted by id).
    pub(crate) fn new(tasks: impl IntoIterator<Item = TaskRef>) -> TaskDump {
        let mut tasks: Vec<TaskInfo> = tasks.into_iter().map(|t| t.info()).collect();
        tasks.sort_by_key(|t| t.id);
        TaskDump { tasks }
    }

    /// The first task named `name`.
    pub fn find(&self, name: &str) -> Option<&TaskInfo> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

impl fmt::Display for TaskDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tasks {
            writeln!(f, "{t}")?;
        }
        Ok(())
    }
}

/// `a::b::Recv<alloc::vec::Vec<u8>>` → `Recv`: the short name of an
/// operation type (plain labels pass through).
pub(super) fn short_name(s: &'static str) -> &'static str {
    let base = s.split('<').next().unwrap_or(s);
    base.rsplit("::").next().unwrap_or(base)
}

impl TaskRef {
    /// What the task dump shows about this task: id, name, state, spawn
    /// location and what it waits on.
    pub fn info(&self) -> TaskInfo {
        let raw = self.raw();
        let core = raw.core();
        let state = if core.is_done() {
            TaskState::Done
        } else if raw.is_busy() {
            TaskState::Running
        } else if raw.is_scheduled() {
            TaskState::Scheduled
        } else {
            TaskState::Waiting
        };
        TaskInfo {
            id: self.id(),
            name: self.name(),
            state,
            spawned_at: core.spawned_at,
            waiting_on: core.waiting_on.get().map(|site| short_name(site())),
            cancelling: self.is_cancelling(),
        }
    }

    /// Where the task was spawned.
    pub fn spawned_at(&self) -> &'static Location<'static> {
        self.raw().core().spawned_at
    }
}

#[cfg(test)]
mod tests {
    use super::short_name;

    #[test]
    fn short_names() {
        assert_eq!(short_name("ringloop::driver::ops::net::Accept"), "Accept");
        assert_eq!(
            short_name("ringloop::driver::ops::stream::Recv<alloc::vec::Vec<u8>>"),
            "Recv"
        );
        assert_eq!(short_name("sleep"), "sleep");
        assert_eq!(short_name("blocking job"), "blocking job");
    }
}
