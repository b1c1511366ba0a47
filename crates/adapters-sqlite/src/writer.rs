//! The one writer: a dedicated thread owns the only read-write connection and runs every
//! write in a `BEGIN IMMEDIATE` transaction, committing whatever writes queued up meanwhile
//! together (group commit). A group closes when the previous commit returns, never on a
//! timer, so a lone write on an idle server commits at once, while under load one fsync
//! pays for many writes.

use diesel::connection::Connection;
use diesel::r2d2::R2D2Connection;
use diesel::result::{Error as DieselError, QueryResult};
use diesel::sqlite::SqliteConnection;
use domain::StorageError;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Most writes committed together: bounds how long the first one of a group waits for
/// the others to run.
const MAX_GROUP: usize = 256;

/// A queued write, type-erased so writes of any result type share the queue.
trait PendingWrite: Send {
    /// Runs the write inside the group's open transaction, in a savepoint of its own, and
    /// keeps its result until the group's fate is known.
    fn run(&mut self, conn: &mut SqliteConnection) -> QueryResult<()>;
    /// Forgets the kept result: its transaction was rolled back and it will run again.
    fn reset(&mut self);
    /// Answers the caller: the kept result if the group committed, else the error.
    fn finish(self: Box<Self>, outcome: Result<(), Arc<DieselError>>);
}

struct Write<F, T> {
    work: F,
    result: Option<T>,
    reply: oneshot::Sender<Result<T, StorageError>>,
}

impl<F, T> PendingWrite for Write<F, T>
where
    F: FnMut(&mut SqliteConnection) -> QueryResult<T> + Send,
    T: Send,
{
    fn run(&mut self, conn: &mut SqliteConnection) -> QueryResult<()> {
        let work = &mut self.work;
        // A panic must not kill the thread every later write depends on; it fails this write.
        let result = catch_unwind(AssertUnwindSafe(|| conn.transaction(|conn| work(conn))))
            .unwrap_or_else(|_| {
                Err(DieselError::QueryBuilderError(
                    "a storage write panicked".into(),
                ))
            })?;
        self.result = Some(result);
        Ok(())
    }

    fn reset(&mut self) {
        self.result = None;
    }

    fn finish(self: Box<Self>, outcome: Result<(), Arc<DieselError>>) {
        let answer = match (outcome, self.result) {
            (Ok(()), Some(value)) => Ok(value),
            (Ok(()), None) => Err(StorageError::msg("a committed write kept no result")),
            (Err(e), _) => Err(classify(e)),
        };
        // The caller may have gone away (its future dropped); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// SQLite's own words for the failures that are its state (busy, I/O, full, read-only,
/// corrupt), whatever the statement: never blamed on a write's input.
const STATE_ERRORS: [&str; 6] = [
    "database is locked",
    "database table is locked",
    "disk I/O error",
    "database or disk is full",
    "attempt to write a readonly database",
    "database disk image is malformed",
];

/// A failed write's error: one SQLite reported about the statement (a constraint, a value
/// too big...) is [`StorageError::refused`], so one bad message of a batch is told from a
/// database that cannot write at all.
fn classify(err: Arc<DieselError>) -> StorageError {
    use diesel::result::DatabaseErrorKind as Kind;
    let refused = match err.as_ref() {
        DieselError::DatabaseError(
            Kind::UnableToSendCommand
            | Kind::ClosedConnection
            | Kind::SerializationFailure
            | Kind::ReadOnlyTransaction,
            _,
        ) => false,
        DieselError::DatabaseError(_, info) => !STATE_ERRORS
            .iter()
            .any(|state| info.message().contains(state)),
        _ => false,
    };
    if refused {
        StorageError::refused(err)
    } else {
        StorageError::new(err)
    }
}

/// Opens a fresh, configured writer connection (to replace one left in a broken state).
pub(crate) type Reopen = Box<dyn Fn() -> Result<SqliteConnection, StorageError> + Send>;

/// Hands writes to the writer thread. Dropping it lets the thread finish the queue,
/// close the connection and exit; [`Writer::shutdown`] waits for that.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Box<dyn PendingWrite>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on `conn`, which must be configured already; `reopen`
    /// replaces it should it ever be left with a transaction it cannot end.
    pub(crate) fn start(conn: SqliteConnection, reopen: Reopen) -> Result<Self, StorageError> {
        let (queue, jobs) = mpsc::channel::<Box<dyn PendingWrite>>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(conn, reopen, jobs))
            .map_err(StorageError::new)?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `work` in a write transaction and answers after it committed. `work` may run
    /// more than once (a write of the same group failed and the group was rolled back),
    /// so it must not have side effects outside the connection.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnMut(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Write {
            work,
            result: None,
            reply,
        });
        self.queue
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(job)
            .map_err(|_| writer_gone())?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Closes the queue and waits for the thread to finish it and close the connection.
    fn shutdown(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the SQLite writer thread panicked");
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Joining makes closing deterministic: once the store is dropped, the file is
        // closed and fully checkpointable by whoever opens it next.
        self.shutdown();
    }
}

fn writer_gone() -> StorageError {
    StorageError::msg("the SQLite writer thread has stopped")
}

/// The writer thread: takes every write queued so far, runs them in one transaction,
/// commits once, answers them all; repeats until the queue closes.
fn run_writer(
    mut conn: SqliteConnection,
    reopen: Reopen,
    jobs: mpsc::Receiver<Box<dyn PendingWrite>>,
) {
    let mut queue: VecDeque<Box<dyn PendingWrite>> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match jobs.recv() {
                Ok(job) => queue.push_back(job),
                Err(mpsc::RecvError) => return,
            }
        }
        while queue.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => queue.push_back(job),
                Err(_) => break,
            }
        }
        let size = queue.len().min(MAX_GROUP);
        let mut group: Vec<_> = queue.drain(..size).collect();
        commit_group(&mut conn, &mut group, &mut queue);
        if conn.is_broken() {
            // An unfinishable transaction (a failed ROLLBACK, a panic inside a savepoint):
            // closing the connection rolls it back; a fresh one carries on.
            match reopen() {
                Ok(fresh) => conn = fresh,
                Err(error) => tracing::error!(%error, "could not reopen the SQLite writer"),
            }
        }
    }
}

/// Runs `group` in one `BEGIN IMMEDIATE` transaction and answers every write of it.
///
/// If one write fails, the group stops there and is rolled back as a whole (SQLite may
/// already have rolled the transaction back itself, after an I/O error for instance, and
/// running further statements would then autocommit them one by one). The failed write
/// gets its error; the others go back to the front of the queue to run again.
fn commit_group(
    conn: &mut SqliteConnection,
    group: &mut Vec<Box<dyn PendingWrite>>,
    queue: &mut VecDeque<Box<dyn PendingWrite>>,
) {
    let mut failed: Option<(usize, DieselError)> = None;
    let outcome = conn.immediate_transaction(|conn| {
        for (index, job) in group.iter_mut().enumerate() {
            if let Err(e) = job.run(conn) {
                failed = Some((index, e));
                return Err(DieselError::RollbackTransaction);
            }
        }
        Ok(())
    });
    match (outcome, failed) {
        (Ok(()), _) => {
            for job in group.drain(..) {
                job.finish(Ok(()));
            }
        }
        (Err(_), Some((index, error))) => {
            tracing::warn!(%error, "an SQLite write failed; retrying the rest of its group");
            let culprit = group.remove(index);
            culprit.finish(Err(Arc::new(error)));
            for mut job in group.drain(..).rev() {
                job.reset();
                queue.push_front(job);
            }
        }
        (Err(error), None) => {
            // BEGIN or COMMIT failed: nothing of the group is in the database.
            tracing::error!(%error, "an SQLite write transaction failed");
            let error = Arc::new(error);
            for job in group.drain(..) {
                job.finish(Err(Arc::clone(&error)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::DatabaseErrorKind as Kind;

    fn error(kind: Kind, message: &str) -> Arc<DieselError> {
        Arc::new(DieselError::DatabaseError(
            kind,
            Box::new(message.to_owned()),
        ))
    }

    #[test]
    fn what_sqlite_says_about_a_statement_is_a_refusal_and_its_own_state_is_not() {
        for refused in [
            error(Kind::UniqueViolation, "UNIQUE constraint failed: t.k"),
            error(Kind::CheckViolation, "CHECK constraint failed: seq > 0"),
            error(Kind::Unknown, "string or blob too big"),
        ] {
            assert!(classify(refused).is_refused());
        }
        for state in [
            error(Kind::Unknown, "database is locked"),
            error(Kind::Unknown, "database or disk is full"),
            error(Kind::Unknown, "disk I/O error"),
            error(Kind::ClosedConnection, "closed"),
        ] {
            assert!(!classify(state).is_refused());
        }
        assert!(!classify(Arc::new(DieselError::RollbackTransaction)).is_refused());
    }
}
