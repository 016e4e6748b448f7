//! One connection to PostgreSQL: a session driven by a runtime of its own
//! ([`Link`]), and the statements a transaction sends through it,
//! pipelined where the answer of one is not needed before the next
//! ([`Conn`]).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use postgres_native_tls::MakeTlsConnector;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Row, Statement};

use crate::error::StoreError;

/// How long closing a connection waits for its goodbye to be sent.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// `error` with its causes: the driver's own text is only the kind ("db
/// error", "error connecting to server"), the reason is in the causes.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// A driver error, by what it means to the caller.
fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let message = with_causes(&e);
    let Some(code) = e.code() else {
        // No answer from the server: the connection failed.
        return StoreError::Unavailable(format!("the database connection failed: {message}"));
    };
    let detail = e
        .as_db_error()
        .map_or(message.clone(), |db| db.message().to_owned());
    if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || code.code().starts_with("08")
    {
        StoreError::Unavailable(format!("the database could not do it now: {detail}"))
    } else if *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE {
        StoreError::overflow()
    } else {
        StoreError::Database(detail)
    }
}

/// A failure to open a connection, causes included.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConnectFailed(pub(super) String);

impl From<tokio_postgres::Error> for ConnectFailed {
    fn from(e: tokio_postgres::Error) -> Self {
        ConnectFailed(with_causes(&e))
    }
}

/// One session with the server: tokio-postgres's client, and a runtime of
/// its own that drives the session's I/O on whichever thread waits for an
/// answer (the connection is a task of that runtime, run only while a
/// thread blocks on it). The store's traits are blocking, and their
/// callers run them on blocking threads.
pub(super) struct Link {
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// The session's task; it ends when the session does.
    session: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Opens a session; `notifications` receives what `LISTEN` brings.
    pub(super) fn open(
        config: &tokio_postgres::Config,
        tls: MakeTlsConnector,
        notifications: Option<mpsc::UnboundedSender<()>>,
    ) -> Result<Link, ConnectFailed> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConnectFailed(format!("cannot start a connection's runtime: {e}")))?;
        let (client, mut connection) = runtime.block_on(config.connect(tls))?;
        let session = runtime.spawn(async move {
            let mut messages = std::future::poll_fn(move |cx| connection.poll_message(cx));
            loop {
                match std::pin::Pin::new(&mut messages).await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        if let Some(heard) = &notifications {
                            let _ = heard.send(());
                        }
                    }
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        tracing::debug!(severity = notice.severity(), "{}", notice.message());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %with_causes(&e), "a database session ended");
                        return;
                    }
                    None => return,
                }
            }
        });
        Ok(Link {
            runtime,
            client,
            session,
        })
    }

    /// Waits for `work`, driving the session meanwhile.
    fn block_on<T>(
        &self,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        self.runtime.block_on(work).map_err(pg_error)
    }

    /// Ends the session with a goodbye to the server. A runtime cannot be
    /// blocked on from async code; a thread cannot tell whether it is in
    /// async code or only inside a runtime's context (as `spawn_blocking`
    /// threads are), so from either the closing moves to a thread of its
    /// own.
    fn close(self) {
        let Link {
            runtime,
            client,
            session,
        } = self;
        drop(client);
        let finish = move || {
            let _ = runtime.block_on(async { tokio::time::timeout(CLOSE_WAIT, session).await });
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::spawn(finish);
        } else {
            finish();
        }
    }
}

/// A connection with its prepared statements, and the BEGIN of a
/// transaction not sent yet.
///
/// tokio-postgres pipelines: requests go out in the order they are first
/// polled, without waiting for earlier answers, and the server runs them
/// in that order. So a transaction's BEGIN travels with its first
/// statement, and the guarded transaction sends its lock and its read
/// together ([`Conn::query_opt_pair`]): one round trip where one at a time
/// takes three.
pub(crate) struct Conn {
    link: Option<Link>,
    statements: HashMap<&'static str, Statement>,
    /// The BEGIN owed: it goes out ahead of the next statement, in the
    /// same round trip.
    begin: Option<&'static str>,
    /// A transaction was begun and not yet ended: the pool must not
    /// hand this connection out again as it is.
    in_transaction: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            link.close();
        }
    }
}

impl Conn {
    pub(super) fn new(link: Link) -> Self {
        Conn {
            link: Some(link),
            statements: HashMap::new(),
            begin: None,
            in_transaction: false,
        }
    }

    fn link(&self) -> &Link {
        match &self.link {
            Some(link) => link,
            None => unreachable!("a connection holds its session until dropped"),
        }
    }

    /// The transaction begun has sent nothing yet.
    pub(super) fn sent_nothing(&self) -> bool {
        self.begin.is_some()
    }

    /// Not fit to be handed out again: a transaction left unfinished, or
    /// the session closed.
    pub(super) fn is_broken(&self) -> bool {
        self.in_transaction || self.is_closed()
    }

    /// Waits for `work`, which needs no request of this connection's own
    /// (what a LISTEN brings), driving the session meanwhile.
    pub(super) fn wait<T>(&self, work: impl Future<Output = T>) -> T {
        self.link().runtime.block_on(work)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.link().client.is_closed()
    }

    /// Runs `work` on the client; a BEGIN owed goes ahead of it in the
    /// same round trip, and its failure is the answer.
    fn send<'c, T, F>(&'c mut self, work: impl FnOnce(&'c Client) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let begin = self.begin.take();
        // Borrowed for 'c, as the client `work` gets (not through
        // `link()`, whose borrow would end here).
        let link: &'c Link = match &self.link {
            Some(link) => link,
            None => unreachable!("a connection holds its session until dropped"),
        };
        link.block_on(async {
            match begin {
                None => work(&link.client).await,
                Some(sql) => {
                    let (begun, done) =
                        tokio::join!(biased; link.client.batch_execute(sql), work(&link.client));
                    begun.and(done)
                }
            }
        })
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let link = self.link();
        let statement = link.block_on(link.client.prepare(sql))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs a statement; its rows.
    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        self.send(|client| client.query(&statement, params))
    }

    /// Runs a statement; its one row or none.
    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let statement = self.statement(sql)?;
        self.send(|client| client.query_opt(&statement, params))
    }

    /// Runs two statements in one round trip, each giving one row or none.
    /// The server starts the second when the first has finished, so at
    /// READ COMMITTED the second sees what was committed while the first
    /// waited for a lock. An error of the first is the answer.
    pub(crate) fn query_opt_pair(
        &mut self,
        first: (&'static str, &[&(dyn ToSql + Sync)]),
        second: (&'static str, &[&(dyn ToSql + Sync)]),
    ) -> Result<(Option<Row>, Option<Row>), StoreError> {
        let a = self.statement(first.0)?;
        let b = self.statement(second.0)?;
        self.send(|client| async move {
            let (a, b) =
                tokio::join!(biased; client.query_opt(&a, first.1), client.query_opt(&b, second.1));
            Ok((a?, b?))
        })
    }

    /// Runs a statement; its one row.
    pub(crate) fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let statement = self.statement(sql)?;
        self.send(|client| client.query_one(&statement, params))
    }

    /// Runs a statement; the rows it changed.
    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        self.send(|client| client.execute(&statement, params))
    }

    /// Prepares a statement made at run time (bulk work, tests), not
    /// kept with the others.
    pub(crate) fn prepare_made(&mut self, sql: &str) -> Result<Statement, StoreError> {
        self.send(|client| client.prepare(sql))
    }

    /// Runs a statement made at run time; its rows.
    pub(crate) fn query_made(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.send(|client| client.query(sql, params))
    }

    /// Runs a statement prepared by [`Conn::prepare_made`]; the rows it
    /// changed.
    pub(crate) fn execute_prepared(
        &mut self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.send(|client| client.execute(statement, params))
    }

    /// Runs statements without parameters.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.send(|client| client.batch_execute(sql))
    }

    /// Brings the schema up to date with `runner`'s migrations.
    pub(super) fn migrate(&mut self, runner: refinery::Runner) -> Result<(), StoreError> {
        let Some(link) = self.link.as_mut() else {
            unreachable!("a connection holds its session until dropped")
        };
        link.runtime
            .block_on(runner.run_async(&mut link.client))
            .map(|_| ())
            .map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// Begins a transaction: the BEGIN goes out with the first statement.
    pub(super) fn begin(&mut self, sql: &'static str) {
        self.in_transaction = true;
        self.begin = Some(sql);
    }

    pub(super) fn rollback(&mut self) -> Result<(), StoreError> {
        // A transaction that sent nothing has nothing to roll back.
        if self.begin.take().is_none() {
            self.batch("ROLLBACK")?;
        }
        self.in_transaction = false;
        Ok(())
    }

    /// Sends COMMIT. A connection lost on the way leaves the outcome
    /// unknown; an error from the server means nothing was kept.
    pub(super) fn commit(&mut self) -> Result<(), StoreError> {
        self.commit_after(&[])
    }

    /// Sends `writes` and COMMIT in one round trip. A write the server
    /// refuses aborts the transaction, and the COMMIT then keeps nothing:
    /// that write's error is the answer. A connection lost once COMMIT is
    /// on its way leaves the outcome unknown.
    pub(super) fn commit_after(
        &mut self,
        writes: &[(&'static str, &[&(dyn ToSql + Sync)])],
    ) -> Result<(), StoreError> {
        if writes.is_empty() && self.begin.is_some() {
            // Nothing was sent: nothing to commit.
            self.begin = None;
            self.in_transaction = false;
            return Ok(());
        }
        let statements = writes
            .iter()
            .map(|(sql, _)| self.statement(sql))
            .collect::<Result<Vec<_>, _>>()?;
        let begin = self.begin.take();
        let link = self.link();
        let client = &link.client;
        let mut requests: Vec<Request<'_>> = Vec::new();
        if let Some(sql) = begin {
            requests.push(Box::pin(client.batch_execute(sql)));
        }
        for (statement, (_, params)) in statements.iter().zip(writes) {
            requests.push(Box::pin(async move {
                client.execute(statement, params).await.map(|_| ())
            }));
        }
        requests.push(Box::pin(client.batch_execute("COMMIT")));
        let results = match link.runtime.block_on(together(requests)) {
            Ok(results) => results,
            // A request failed before it went out (the connection was
            // closed): COMMIT was never sent, and the pool discards the
            // connection with its transaction still open.
            Err(unsent) => return Err(pg_error(unsent)),
        };
        // COMMIT was sent: the transaction has ended, unless its answer was
        // lost.
        let ended = results.last().is_some_and(Result::is_ok);
        let Some(first) = results.into_iter().find_map(Result::err) else {
            self.in_transaction = false;
            return Ok(());
        };
        if first.as_db_error().is_none() {
            return Err(StoreError::OutcomeUnknown(format!(
                "the connection to the database was lost during COMMIT: {first}"
            )));
        }
        // Refused by the server: a write aborted the transaction (the
        // COMMIT then rolled it back), or the COMMIT itself failed. Nothing
        // was kept.
        if ended {
            self.in_transaction = false;
        }
        Err(pg_error(first))
    }
}

/// A request to the server, waited for with others ([`together`]).
type Request<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + 'a>>;

/// Waits for `requests` together: each is first polled in the order given,
/// so they go out in that order, in one round trip. Their results, in
/// order; or the error of one that failed before it went out (when first
/// polled), in which case the requests after it were never sent.
async fn together(
    mut requests: Vec<Request<'_>>,
) -> Result<Vec<Result<(), tokio_postgres::Error>>, tokio_postgres::Error> {
    let mut results: Vec<Option<Result<(), tokio_postgres::Error>>> =
        requests.iter().map(|_| None).collect();
    let mut sent = 0;
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (i, (request, result)) in requests.iter_mut().zip(results.iter_mut()).enumerate() {
            if result.is_some() {
                continue;
            }
            let first_poll = i == sent;
            match request.as_mut().poll(cx) {
                std::task::Poll::Ready(Err(e)) if first_poll => {
                    return std::task::Poll::Ready(Err(e));
                }
                std::task::Poll::Ready(done) => *result = Some(done),
                std::task::Poll::Pending => waiting = true,
            }
            if first_poll {
                sent += 1;
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    })
    .await?;
    Ok(results.into_iter().flatten().collect())
}
