//! Two ways past the rewriter the session layer closes, against a real Postgres with real
//! clients (psql, tokio-postgres, a raw protocol client):
//!
//! - `standard_conforming_strings = off`: Postgres then reads `\'` inside `'…'` as an escaped
//!   quote, so text viewgate reads as a literal can be a reference to the base table. A
//!   versioned session may not turn it off; one that has it off anyway (from its login,
//!   followed from ParameterStatus) is refused every statement but turning it on (0A000), by
//!   Query and by Parse; while earlier work is unanswered, a statement with a backslash that
//!   the rewriter would read is refused.
//! - The FunctionCall message calls a function by oid with no SQL to rewrite: a versioned
//!   session may call only the large-object functions so (0A000 for `table_to_xml` and the
//!   rest, and the session goes on); libpq's large-object API still works through the proxy.

use crate::common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use common::TestProxy;
use common::raw;
use common::versions::{psql, versioned_proxy};
use viewgate::pg_cluster::SUPERUSER;

/// The red team's statement: with standard_conforming_strings off, Postgres reads
/// `model_type FROM model_metadata` outside any literal; viewgate reads it inside one.
const SMUGGLED: &str = "SELECT 'x\\' AS a, ' AS b, model_type FROM model_metadata -- '\n;";

/// What the refusal of a statement turning the setting off says.
const TURNS_OFF: &str = "may turn standard_conforming_strings off";
/// What a session that has the setting off is told.
const TURN_ON: &str = "run SET standard_conforming_strings = on";
/// What a backslash sent while earlier work is unanswered is told.
const WAIT: &str = "once the earlier statements are answered";

fn with_a_row(proxy: &TestProxy) {
    proxy.admin(
        "INSERT INTO model_metadata (model_name, model_version, model_type) VALUES ('bert', '1', 'secret-type')",
    );
}

/// A role whose logins have standard_conforming_strings off (set over a direct connection,
/// where the proxy cannot see it): Postgres reports it at login.
const LEGACY_ROLE: &str = "legacy_strings";

fn with_a_legacy_role(proxy: &TestProxy) {
    proxy.admin(&format!(
        "CREATE ROLE {LEGACY_ROLE} LOGIN; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {LEGACY_ROLE}; \
         ALTER ROLE {LEGACY_ROLE} SET standard_conforming_strings = off"
    ));
}

/// Runs each of `commands` as its own `-c` through psql (each its own Query), stopping at the
/// first error: stdout, or stderr on failure.
fn psql_commands(command: &mut Command, commands: &[&str]) -> Result<String, String> {
    for sql in commands {
        command.args(["-c", sql]);
    }
    let output = command.output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    if output.status.success() {
        Ok(text(&output.stdout))
    } else {
        Err(text(&output.stderr))
    }
}

#[test]
fn a_versioned_session_never_reads_with_strings_that_do_not_conform() {
    let proxy = versioned_proxy();
    with_a_row(&proxy);
    // The leak is real: straight to Postgres, the statement reads the base table's column.
    let mut direct = Command::new(proxy.cluster.bin("psql"));
    direct
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(proxy.cluster.admin_conninfo("postgres"))
        .stdin(Stdio::null());
    let leaked = psql_commands(
        &mut direct,
        &["SET standard_conforming_strings = off", SMUGGLED],
    )
    .unwrap();
    assert!(leaked.contains("secret-type"), "{leaked}");

    // Through viewgate, no statement turns it off (0A000 from the rewriter's refusal is
    // 42601; either way, refused before Postgres runs it), and the session keeps it on.
    let through = |commands: &[&str]| psql_commands(&mut proxy.psql(&proxy.conninfo()), commands);
    for turn_off in [
        "SET standard_conforming_strings = off",
        "SET LOCAL standard_conforming_strings TO false",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
        "SELECT set_config('standard_' || 'conforming_strings', 'off', false)",
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
        // The seventh red-team pass crashed Postgres 15's pg_stat_statements so, and read
        // base rows through bodies with `\x5f` escapes.
        "SELECT set_config('standard_conforming_strings', 'off', false); SELECT 'a\\' AS x, ' AS y, (SELECT 1) AS z --'",
    ] {
        // (A computed name may be the search_path too, which is refused first.)
        let error = through(&[turn_off]).unwrap_err();
        assert!(
            error.contains(TURNS_OFF) || error.contains("give set_config a constant setting name"),
            "{turn_off}: {error}"
        );
    }
    let setting = through(&["SHOW standard_conforming_strings"]).unwrap();
    assert_eq!(setting, "on");

    // Nor does a login's startup packet.
    let declared = format!(
        "{} options='-c standard_conforming_strings=off'",
        proxy.conninfo()
    );
    let error = psql_commands(&mut proxy.psql(&declared), &["SELECT 1"]).unwrap_err();
    assert!(error.contains(TURN_ON), "{error}");

    // A login whose role has it off (reported in the startup's ParameterStatus): every
    // statement is refused, with or without a backslash, until the session turns it on.
    with_a_legacy_role(&proxy);
    let conninfo = format!("{} user={LEGACY_ROLE}", proxy.conninfo());
    let off = |commands: &[&str]| psql_commands(&mut proxy.psql(&conninfo), commands);
    for sql in [
        SMUGGLED,
        "SELECT * FROM model_metadata WHERE model_name = 'bert'",
        "SELECT 1",
    ] {
        let error = off(&[sql]).unwrap_err();
        assert!(
            error.contains(TURN_ON)
                && error.contains("version v1")
                && !error.contains("secret-type"),
            "{sql}: {error}"
        );
    }
    let code = off(&["\\set VERBOSITY verbose", "SELECT 1"]).unwrap_err();
    assert!(code.contains("0A000"), "{code}");
    assert_eq!(off(&["SHOW standard_conforming_strings"]).unwrap(), "off");

    // Turned back on, the statement is read as viewgate reads it: two literals, no column
    // of the table; and a read is rewritten (v1's five columns).
    let back_on = off(&["SET standard_conforming_strings = on", SMUGGLED]).unwrap();
    assert_eq!(back_on, "x\\| AS b, model_type FROM model_metadata --");
    let row = off(&[
        "SET standard_conforming_strings TO true",
        "SELECT * FROM model_metadata WHERE model_name <> 'a\\b'",
    ])
    .unwrap();
    assert_eq!(row.split('|').count(), 5, "{row}");
    // RESET goes back to the login's value, off: so it does not count as turning it on.
    let error = off(&["RESET standard_conforming_strings"]).unwrap_err();
    assert!(error.contains(TURN_ON), "{error}");
    let row = psql(
        &proxy,
        None,
        "SELECT * FROM model_metadata WHERE model_name <> 'a\\b'",
    )
    .unwrap();
    assert_eq!(row.split('|').count(), 5, "{row}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parse_is_refused_while_strings_may_not_conform() {
    let proxy = versioned_proxy();
    with_a_row(&proxy);
    with_a_legacy_role(&proxy);
    let (client, connection) =
        tokio_postgres::connect(&proxy.url(LEGACY_ROLE, "postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    // Parse: the refusal's own ErrorResponse, in the Parse's place; without a backslash too.
    for sql in [
        SMUGGLED,
        "SELECT * FROM model_metadata WHERE model_name = $1",
    ] {
        let error = client.prepare(sql).await.unwrap_err();
        let error = error.as_db_error().expect("an error from the server side");
        assert_eq!(error.code().code(), "0A000", "{error:?}");
        assert!(error.message().contains(TURN_ON), "{error:?}");
    }

    // Back on: prepared and read as viewgate reads it; the session goes on as usual.
    client
        .batch_execute("SET standard_conforming_strings = on")
        .await
        .unwrap();
    let statement = client.prepare(SMUGGLED).await.unwrap();
    assert_eq!(statement.columns().len(), 2);
    let rows = client
        .query(
            "SELECT * FROM model_metadata WHERE model_name = $1",
            &[&"bert"],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].columns().len(), 5);

    // Work pipelined ahead of the statement, not answered when the statement is routed: the
    // proxy cannot know yet how Postgres will read it (that work might have changed the
    // setting where the proxy cannot see), so a backslash near a managed table is refused.
    let (earlier, prepared) = tokio::join!(
        client.batch_execute("SELECT pg_sleep(0.05)"),
        client.prepare(SMUGGLED),
    );
    earlier.unwrap();
    let error = prepared.unwrap_err();
    let error = error.as_db_error().expect("an error from the server side");
    assert_eq!(error.code().code(), "0A000", "{error:?}");
    assert!(error.message().contains(WAIT), "{error:?}");
}

/// `table_to_xml` and `query_to_xml` by oid (fixed in pg_proc.dat).
const TABLE_TO_XML: u32 = 2923;
const QUERY_TO_XML: u32 = 2924;
/// `pg_backend_pid()`: a harmless function, called where nothing is versioned.
const PG_BACKEND_PID: u32 = 2026;
/// The large-object functions libpq calls by FunctionCall.
const LO_OPEN: u32 = 952;
const LO_CLOSE: u32 = 953;
const LOREAD: u32 = 954;
const LOWRITE: u32 = 955;
const LO_LSEEK: u32 = 956;
const LO_CREAT: u32 = 957;
const LO_UNLINK: u32 = 964;
/// `INV_READ | INV_WRITE`.
const READ_WRITE: i32 = 0x20000 | 0x40000;

/// A FunctionCall of `oid` with `args` all in `format` (0 text, 1 binary) and its result in
/// `format`.
fn function_call(oid: u32, format: i16, args: &[&[u8]]) -> Vec<u8> {
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&1u16.to_be_bytes());
    body.extend_from_slice(&format.to_be_bytes());
    body.extend_from_slice(&(args.len() as u16).to_be_bytes());
    for arg in args {
        body.extend_from_slice(&(arg.len() as i32).to_be_bytes());
        body.extend_from_slice(arg);
    }
    body.extend_from_slice(&format.to_be_bytes());
    raw::message(b'F', &body)
}

/// Sends a FunctionCall and reads up to its ReadyForQuery: the result's bytes, or the error.
fn call(
    stream: &mut TcpStream,
    oid: u32,
    format: i16,
    args: &[&[u8]],
) -> Result<Vec<u8>, raw::ErrorReport> {
    stream.write_all(&function_call(oid, format, args)).unwrap();
    let mut outcome = None;
    loop {
        match raw::read_message(stream).expect("FunctionCall answered") {
            (b'V', body) => {
                let length = i32::from_be_bytes(body[..4].try_into().unwrap());
                let value = body[4..4 + length.max(0) as usize].to_vec();
                outcome.get_or_insert(Ok(value));
            }
            (b'E', body) => {
                outcome.get_or_insert(Err(raw::parse_error(&body)));
            }
            (b'Z', _) => return outcome.expect("a result or an error"),
            _ => {}
        }
    }
}

fn int4(value: &[u8]) -> i32 {
    i32::from_be_bytes(value.try_into().unwrap())
}

/// Starts a trust session on `address` as the superuser on `database`.
fn session(address: SocketAddr, database: &str) -> TcpStream {
    raw::start_session_with(address, &[("user", SUPERUSER), ("database", database)])
        .expect("session starts")
}

#[test]
fn a_function_call_other_than_large_objects_is_refused_and_the_session_goes_on() {
    let proxy = versioned_proxy();
    with_a_row(&proxy);
    let text_args: [&[u8]; 4] = [b"public.model_metadata", b"true", b"false", b""];
    // The leak is real: straight to Postgres, table_to_xml shows every base column.
    let direct: SocketAddr = format!("127.0.0.1:{}", proxy.cluster.port())
        .parse()
        .unwrap();
    let xml = call(
        &mut session(direct, "postgres"),
        TABLE_TO_XML,
        0,
        &text_args,
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&xml).contains("secret-type"));

    let mut stream = session(proxy.address, "postgres");
    for (oid, args) in [
        (TABLE_TO_XML, text_args),
        (
            QUERY_TO_XML,
            [b"SELECT * FROM model_metadata", b"true", b"false", b""],
        ),
    ] {
        let error = call(&mut stream, oid, 0, &args).unwrap_err();
        assert_eq!(error.code, "0A000", "{error:?}");
        assert!(
            error.message.contains("only for large-object functions")
                && error.message.contains("SELECT"),
            "{error:?}"
        );
    }
    // The session goes on, still at v1.
    let answer = raw::simple_query(&mut stream, "SELECT count(*) FROM model_metadata");
    assert_eq!(raw::first_column(&answer), ["1"]);
    // Refused inside a block too, which fails as after any error, and ends as usual.
    raw::simple_query(&mut stream, "BEGIN");
    let error = call(&mut stream, PG_BACKEND_PID, 1, &[]).unwrap_err();
    assert_eq!(error.code, "0A000");
    let failed = raw::simple_query(&mut stream, "SELECT 1");
    assert!(
        failed.iter().any(|(tag, _)| *tag == b'E'),
        "the block failed"
    );
    raw::simple_query(&mut stream, "ROLLBACK");
    assert_eq!(
        raw::first_column(&raw::simple_query(&mut stream, "SELECT 2")),
        ["2"]
    );

    // A database the catalog does not govern: nothing versioned, FunctionCall forwarded.
    let mut unversioned = session(proxy.address, "template1");
    let pid = call(&mut unversioned, PG_BACKEND_PID, 1, &[]).unwrap();
    assert!(int4(&pid) > 0);
}

#[test]
fn large_objects_round_trip_through_function_calls() {
    let proxy = versioned_proxy();
    let mut stream = session(proxy.address, "postgres");
    let data = b"a large object through viewgate \\ with a backslash";
    raw::simple_query(&mut stream, "BEGIN");
    let oid = call(&mut stream, LO_CREAT, 1, &[&READ_WRITE.to_be_bytes()]).unwrap();
    let fd = call(&mut stream, LO_OPEN, 1, &[&oid, &READ_WRITE.to_be_bytes()]).unwrap();
    let written = call(&mut stream, LOWRITE, 1, &[&fd, data]).unwrap();
    assert_eq!(int4(&written), data.len() as i32);
    let start = call(
        &mut stream,
        LO_LSEEK,
        1,
        &[&fd, &0i32.to_be_bytes(), &0i32.to_be_bytes()],
    );
    assert_eq!(int4(&start.unwrap()), 0);
    let read = call(&mut stream, LOREAD, 1, &[&fd, &1000i32.to_be_bytes()]).unwrap();
    assert_eq!(read, data);
    call(&mut stream, LO_CLOSE, 1, &[&fd]).unwrap();
    raw::simple_query(&mut stream, "COMMIT");
    call(&mut stream, LO_UNLINK, 1, &[&oid]).unwrap();

    // psql's \lo_import and \lo_export: libpq's large-object API, FunctionCalls throughout.
    let dir = tempfile::tempdir().unwrap();
    let (source, copy) = (dir.path().join("in.bin"), dir.path().join("out.bin"));
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&source, &content).unwrap();
    let output = proxy
        .psql(&proxy.conninfo())
        .args([
            "-c",
            &format!("\\lo_import '{}'", source.display()),
            "-c",
            &format!("\\lo_export :LASTOID '{}'", copy.display()),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(std::fs::read(&copy).unwrap(), content);
}
