//! The first packet of a connection: startup, SSLRequest, GSSENCRequest or CancelRequest, read
//! from arbitrary bytes exactly as the handshake reads it (length checks included), then what the session reads from a startup
//! message: its parameters, the declared viewgate version, and the packet re-encoded for the
//! upstream, which must parse back to the same message.
#![no_main]

use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use viewgate::protocol::startup::{StartupPacket, parse_startup_packet, read_startup_packet};
use viewgate::router::version_command;

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    // A byte slice never blocks: the read completes (or fails) in one poll.
    let packet = read_startup_packet(&mut stream)
        .now_or_never()
        .expect("reading from memory never waits");
    let Ok(StartupPacket::Startup(message)) = packet else {
        return;
    };
    let _ = (
        message.user(),
        message.database(),
        message.needs_negotiation(),
    );
    let _ = message.param("application_name");
    let _ = version_command::from_startup(&message.params);
    let encoded = message.encode_for_upstream();
    // The upstream gets a well-formed packet: its length prefix, then a body that parses.
    let length = u32::from_be_bytes(encoded[..4].try_into().unwrap()) as usize;
    assert_eq!(length, encoded.len());
    match parse_startup_packet(&encoded[4..]) {
        Ok(StartupPacket::Startup(again)) => assert_eq!(again.params, message.params),
        other => panic!("re-encoded startup does not parse back: {other:?}"),
    }
});
