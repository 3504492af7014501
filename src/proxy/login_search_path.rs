//! The session's search_path, asked of its own upstream connection right after login and
//! before the client's first statement, so the router resolves unqualified names on the
//! value Postgres actually has: the startup packet's, else the role's and database's
//! defaults (`ALTER ROLE … SET search_path`, `ALTER DATABASE …`, `ALTER ROLE … IN DATABASE
//! …`), else the server's. One round trip at login, made only while some relation shadows a
//! managed name (`SessionRouter::wants_login_search_path`); the client sees none of it:
//! the answer is read here, and anything else the upstream says meanwhile (a notice, a
//! parameter change) is passed on.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::error::SessionError;
use crate::net::stream::UpstreamStream;
use crate::protocol::backend;
use crate::protocol::frontend;
use crate::protocol::reader::{MessageReader, ReadError};

/// What the proxy asks. Fixed text: nothing of the client's reaches it.
pub const SHOW_SEARCH_PATH: &str = "SHOW search_path";

/// Sends [`SHOW_SEARCH_PATH`] and reads the answer up to its ReadyForQuery; `None` if
/// Postgres gave no value. Messages other than the answer's go to `to_client`.
pub async fn ask(
    upstream: &mut UpstreamStream,
    reader: &mut MessageReader,
    to_client: &mut BytesMut,
) -> Result<Option<String>, SessionError> {
    upstream
        .write_all(&frontend::query(SHOW_SEARCH_PATH))
        .await
        .map_err(|_| SessionError::UpstreamClosed)?;
    upstream
        .flush()
        .await
        .map_err(|_| SessionError::UpstreamClosed)?;
    let mut value = None;
    loop {
        let frame = reader.next(upstream).await.map_err(|error| match error {
            ReadError::Frame(error) => SessionError::UpstreamProtocol(error.to_string()),
            ReadError::Closed | ReadError::Io(_) => SessionError::UpstreamClosed,
        })?;
        match frame[0] {
            backend::DATA_ROW => value = backend::data_row_first_text(&frame),
            backend::READY_FOR_QUERY => return Ok(value),
            backend::ROW_DESCRIPTION | backend::COMMAND_COMPLETE => {}
            backend::ERROR_RESPONSE => {
                let code = backend::error_fields(&frame).map(|fields| fields.code);
                tracing::warn!(
                    ?code,
                    "Postgres refused SHOW search_path at login; the session's search_path is not followed"
                );
                value = None;
            }
            _ => to_client.extend_from_slice(&frame),
        }
    }
}
