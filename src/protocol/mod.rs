//! The Postgres wire protocol, as much of it as a message-level proxy needs: framing, the
//! startup packets, the few messages viewgate inspects, and the ones it sends itself. Every
//! length bound is in `limits`, every tag and code in `backend`, `frontend` or `startup`.

pub mod backend;
pub mod bind;
pub mod cancel_key;
pub mod frame;
pub mod frontend;
pub mod limits;
pub mod reader;
pub mod reply;
pub mod sqlstate;
pub mod startup;
