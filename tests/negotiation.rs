//! Encryption negotiation at startup as Postgres clients perform it: GSSENCRequest and (with
//! client TLS disabled) SSLRequest are declined with 'N' and the same connection goes on to a
//! normal startup. libpq with gssencmode=prefer asks for GSS, then for TLS, on one connection;
//! asking for the same kind twice is a protocol violation, as in Postgres. A replication
//! connection is refused: its stream would carry base tables whole.

use crate::common;

use std::io::{Read, Write};

use common::TestProxy;
use common::raw::{self, PROTOCOL_3_0};

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

fn request(code: u32) -> Vec<u8> {
    let mut packet = 8u32.to_be_bytes().to_vec();
    packet.extend(code.to_be_bytes());
    packet
}

fn answer(stream: &mut std::net::TcpStream) -> u8 {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).unwrap();
    byte[0]
}

#[test]
fn encryption_requests_are_declined_and_startup_continues() {
    let proxy = TestProxy::start();
    for code in [GSSENC_REQUEST, SSL_REQUEST] {
        let mut stream = raw::connect(proxy.address);
        stream.write_all(&request(code)).unwrap();
        assert_eq!(answer(&mut stream), b'N', "request {code}");
        stream
            .write_all(&raw::startup_packet(PROTOCOL_3_0, &[("user", "postgres")]))
            .unwrap();
        while raw::read_message(&mut stream).unwrap().0 != b'Z' {}
        let rows = raw::first_column(&raw::simple_query(&mut stream, "SELECT 'plain'"));
        assert_eq!(rows, vec!["plain"]);
    }
}

#[test]
fn gss_then_tls_like_libpq_then_a_repeat_is_refused() {
    let proxy = TestProxy::start();
    let mut stream = raw::connect(proxy.address);
    stream.write_all(&request(GSSENC_REQUEST)).unwrap();
    assert_eq!(answer(&mut stream), b'N');
    stream.write_all(&request(SSL_REQUEST)).unwrap();
    assert_eq!(answer(&mut stream), b'N', "TLS may be asked for after GSS");
    stream.write_all(&request(SSL_REQUEST)).unwrap();
    let report = raw::expect_error(&mut stream);
    assert_eq!(report.code, "08P01", "{report:?}");
    assert!(
        report.message.contains("SSL was requested twice"),
        "{report:?}"
    );
}

#[test]
fn replication_connections_are_refused_and_ordinary_ones_with_the_parameter_off_go_on() {
    let proxy = TestProxy::start();
    for mode in ["database", "true", "on"] {
        let mut stream = raw::connect(proxy.address);
        let startup = [("user", "postgres"), ("replication", mode)];
        stream
            .write_all(&raw::startup_packet(PROTOCOL_3_0, &startup))
            .unwrap();
        let report = raw::expect_error(&mut stream);
        assert_eq!(report.code, "0A000", "{mode}: {report:?}");
        assert!(
            report
                .message
                .contains("does not proxy replication connections"),
            "{report:?}"
        );
    }
    let mut stream = raw::connect(proxy.address);
    let startup = [("user", "postgres"), ("replication", "off")];
    stream
        .write_all(&raw::startup_packet(PROTOCOL_3_0, &startup))
        .unwrap();
    while raw::read_message(&mut stream).unwrap().0 != b'Z' {}
    let rows = raw::first_column(&raw::simple_query(&mut stream, "SELECT 'ordinary'"));
    assert_eq!(rows, vec!["ordinary"]);
}
