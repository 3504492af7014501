//! The NOTIFY channel between the planes: the control plane announces every catalog change on
//! it (inside the change's transaction), and every proxy LISTENs and reloads its routing state.

/// The channel proxies LISTEN on; a notification means "reload the routing map".
pub const CONTROL_CHANNEL: &str = "viewgate_control";
