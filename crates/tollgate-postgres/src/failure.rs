//! What a failed database operation says, and whether it cost the connection.

/// A failed database operation: what went wrong, and whether the connection is gone (then the
/// caller drops it and the store counts as unreachable until an operation succeeds).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) lost: bool,
}

impl Failure {
    /// A failure that is not the connection's: a record the schema cannot hold.
    pub(crate) fn refused(message: String) -> Failure {
        Failure {
            message,
            lost: false,
        }
    }

    /// The connection could not be made or used.
    pub(crate) fn lost(message: String) -> Failure {
        Failure {
            message,
            lost: true,
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        // A database error (constraint, trigger, ...) leaves the connection usable; anything else
        // (I/O, a closed connection, a protocol error) does not.
        Failure {
            lost: e.is_closed() || e.as_db_error().is_none(),
            message: describe(&e),
        }
    }
}

/// A client error in one line, with the server's message and code when it sent one.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
                source = cause_of(source);
            }
            message
        }
    }
}

fn cause_of<'a>(
    error: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    error.and_then(std::error::Error::source)
}
