//! A SQLite file through rusqlite, on the calling thread: the read-only connections
//! every read takes ([`Readers`]) and the writing connection of `super::writer`
//! ([`Lite`], [`open_writer`]). The schema is still migrated with sqlx, and
//! `sqlite::memory:` and PostgreSQL stay on sqlx.
//!
//! **Why not sqlx here.** sqlx runs each SQLite connection on a thread of its own and
//! hands every statement, and its answer, across a channel between that thread and the
//! caller's. A step that keeps a session made five or six such round trips (pool,
//! read, `BEGIN`, upsert, `COMMIT`), each a futex wake-up and a context switch, and
//! they cost more than SQLite itself: in a profile of the flow service under load,
//! sqlx's SQLite threads were 42 % of its CPU, mostly switching, while SQLite's own
//! work was a few percent. Here a read runs on the caller's thread, and a batch of
//! writes runs whole on the writer's thread.
//!
//! **A read blocks its thread for as long as it runs.** A read is one primary-key
//! lookup, microseconds on a file in the page cache, and WAL never makes it wait for
//! the writer. It is bounded by the connection's busy timeout (half the store's
//! timeout), which only a checkpoint or recovery by another process can bring into
//! play; on a runtime of one thread (the `flow-service` binary's default) every call
//! waits with it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Statement};

use super::write::{Arg, Exec, Row};

/// Names of the numbered parameters: SQLite numbers a `$N` parameter by where it
/// first appears, not by N, so each is bound by name.
const PARAMS: [&str; 5] = ["$1", "$2", "$3", "$4", "$5"];

/// Binds `args` to `$1`, `$2`… of `statement`: one value for each of its parameters,
/// else an error (a missing value would otherwise be NULL).
fn bind(statement: &mut Statement<'_>, args: &[Arg<'_>]) -> rusqlite::Result<()> {
    let wanted = statement.parameter_count();
    if args.len() != wanted || wanted > PARAMS.len() {
        return Err(rusqlite::Error::InvalidParameterCount(args.len(), wanted));
    }
    for (name, arg) in PARAMS.iter().zip(args) {
        let index = statement
            .parameter_index(name)?
            .ok_or_else(|| rusqlite::Error::InvalidParameterName((*name).to_owned()))?;
        match *arg {
            Arg::Text(text) => statement.raw_bind_parameter(index, text)?,
            Arg::Int(int) => statement.raw_bind_parameter(index, int)?,
        }
    }
    Ok(())
}

/// The first row of `sql` on `conn`, if any.
pub(super) fn fetch_optional<T: Row>(
    conn: &Connection,
    sql: &'static str,
    args: &[Arg<'_>],
) -> rusqlite::Result<Option<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    bind(&mut statement, args)?;
    let mut rows = statement.raw_query();
    match rows.next()? {
        Some(row) => T::try_from(row).map(Some),
        None => Ok(None),
    }
}

/// A connection to run a write's statements on ([`super::write::apply`]). Its futures
/// never wait: the writer's thread drives them with a plain `block_on`.
pub(super) struct Lite<'c>(pub(super) &'c Connection);

impl Exec for Lite<'_> {
    type Error = rusqlite::Error;

    async fn execute(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<u64, rusqlite::Error> {
        let mut statement = self.0.prepare_cached(sql)?;
        bind(&mut statement, args)?;
        Ok(statement.raw_execute()? as u64)
    }

    async fn fetch_optional<T: Row>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Option<T>, rusqlite::Error> {
        fetch_optional(self.0, sql, args)
    }
}

/// Opens the writer's connection to `path` (which exists, migrated): WAL, commits not
/// fsynced unless the writer asks (`synchronous=NORMAL`), waiting at most `busy` for
/// another process's lock.
pub(super) fn open_writer(path: &Path, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE, busy)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// A connection to `path` with `flags`, used by one thread at a time (no SQLite mutex),
/// waiting at most `busy` for another connection's lock.
fn open(path: &Path, flags: OpenFlags, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(busy)?;
    Ok(conn)
}

/// Why a read of a SQLite file did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error("the store is closed")]
    Closed,
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Read-only connections to a SQLite file, each used by one read at a time on the
/// caller's thread. A read takes an idle one or opens one, and puts it back: there are
/// as many as the most reads ever at once (the runtime's threads, unless reads come
/// from other threads too), kept until the store closes.
#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    busy: Duration,
    idle: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl Readers {
    /// Readers of `path`, opened as needed, each waiting at most `busy` for a lock.
    pub(super) fn new(path: PathBuf, busy: Duration) -> Self {
        Readers {
            path,
            busy,
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// Runs `read` on a connection, on this thread.
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ReadError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ReadError::Closed);
        }
        let idle = self
            .idle
            .lock()
            .expect("no read panics holding the lock")
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY, self.busy)?,
        };
        let result = read(&conn);
        if !self.closed.load(Ordering::Acquire) {
            self.idle
                .lock()
                .expect("no read panics holding the lock")
                .push(conn);
        }
        Ok(result?)
    }

    /// Closes the idle connections; later reads fail with [`ReadError::Closed`].
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.idle
            .lock()
            .expect("no read panics holding the lock")
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with one table, and readers of it.
    fn readers() -> (tempfile::TempDir, Readers) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (a TEXT, b INTEGER); INSERT INTO t VALUES ('x', 7)")
            .unwrap();
        (dir, Readers::new(path, Duration::from_millis(100)))
    }

    #[test]
    fn values_bind_to_their_numbers_wherever_they_first_appear() {
        let (_dir, readers) = readers();
        // `$2` first: SQLite alone would give it index 1.
        let row: Option<(i64, String)> = readers
            .read(|conn| {
                fetch_optional(
                    conn,
                    "SELECT $2 + b, $1 FROM t",
                    &[Arg::Text("first"), Arg::Int(35)],
                )
            })
            .unwrap();
        assert_eq!(row, Some((42, "first".to_owned())));
        let none: Option<(String,)> = readers
            .read(|conn| fetch_optional(conn, "SELECT a FROM t WHERE b = $1", &[Arg::Int(8)]))
            .unwrap();
        assert_eq!(none, None);
        // A value for a parameter the statement lacks, or none for one it has, is an
        // error: neither is ignored nor bound as NULL.
        for (sql, args) in [
            ("SELECT a FROM t", &[Arg::Int(8)][..]),
            (
                "SELECT a FROM t WHERE b = $1 AND a = $2",
                &[Arg::Int(7)][..],
            ),
        ] {
            let error = readers
                .read(|conn| fetch_optional::<(String,)>(conn, sql, args))
                .unwrap_err();
            assert!(
                matches!(
                    error,
                    ReadError::Sqlite(rusqlite::Error::InvalidParameterCount(..))
                ),
                "{error:?}"
            );
        }
    }

    #[test]
    fn reads_reuse_connections_and_fail_once_closed() {
        let (_dir, readers) = readers();
        let read = |readers: &Readers| {
            readers.read(|conn| fetch_optional::<(String,)>(conn, "SELECT a FROM t", &[]))
        };
        assert_eq!(read(&readers).unwrap(), Some(("x".to_owned(),)));
        assert_eq!(read(&readers).unwrap(), Some(("x".to_owned(),)));
        assert_eq!(readers.idle.lock().unwrap().len(), 1);
        readers.close();
        assert!(matches!(read(&readers), Err(ReadError::Closed)));
        assert!(readers.idle.lock().unwrap().is_empty());
    }

    #[test]
    fn readers_cannot_write() {
        let (_dir, readers) = readers();
        let error = readers
            .read(|conn| conn.execute("DELETE FROM t", []))
            .unwrap_err();
        assert!(error.to_string().contains("readonly"), "{error}");
    }
}
