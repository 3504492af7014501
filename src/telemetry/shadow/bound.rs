//! Running a sampled extended-protocol statement again with the client's own parameters: the
//! statement is prepared with the parameter types the client's Parse declared, and bound with
//! the client's bytes in the client's formats (text or binary), untouched. Results arrive in
//! binary (tokio-postgres asks for it); each value is rendered as text where its type is a
//! common one (booleans, integers, floats, text types) and as `\x` hex otherwise, so both
//! versions' rows are compared in one form and samples stay readable.

use std::error::Error;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio_postgres::Client;
use tokio_postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use super::MAX_SHADOW_ROWS;
use super::compare::{ResultSet, row_bytes};
use crate::proxy::shadow_tap::BoundParameters;

/// One client parameter: its bytes as sent, in the format it was sent in.
#[derive(Debug)]
struct ClientParameter<'a> {
    value: Option<&'a [u8]>,
    binary: bool,
}

impl ToSql for ClientParameter<'_> {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self.value {
            None => Ok(IsNull::Yes),
            Some(bytes) => {
                out.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        if self.binary {
            Format::Binary
        } else {
            Format::Text
        }
    }

    to_sql_checked!();
}

/// A result value as text.
struct Rendered(String);

impl<'a> FromSql<'a> for Rendered {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let text = match *ty {
            Type::BOOL => if bool::from_sql(ty, raw)? { "t" } else { "f" }.to_owned(),
            Type::INT2 => i16::from_sql(ty, raw)?.to_string(),
            Type::INT4 => i32::from_sql(ty, raw)?.to_string(),
            Type::INT8 => i64::from_sql(ty, raw)?.to_string(),
            Type::OID => u32::from_sql(ty, raw)?.to_string(),
            Type::FLOAT4 => f32::from_sql(ty, raw)?.to_string(),
            Type::FLOAT8 => f64::from_sql(ty, raw)?.to_string(),
            _ if <String as FromSql>::accepts(ty) => String::from_sql(ty, raw)?,
            _ => {
                let mut hex = String::with_capacity(2 + raw.len() * 2);
                hex.push_str("\\x");
                for byte in raw {
                    hex.push_str(&format!("{byte:02x}"));
                }
                hex
            }
        };
        Ok(Rendered(text))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The type a client declared by OID (built-in, or described by its OID alone: the server
/// only needs the OID, and 0 leaves the type to it).
fn declared_type(oid: u32) -> Type {
    Type::from_oid(oid)
        .unwrap_or_else(|| Type::new(format!("oid_{oid}"), oid, Kind::Simple, String::new()))
}

/// Runs `sql` with the client's parameters; `None` when it returns more than
/// [`MAX_SHADOW_ROWS`] rows or more than `bytes` (`compare::row_bytes`; the rest is not read
/// into memory).
pub async fn read_bound(
    client: &Client,
    sql: &str,
    parameters: &BoundParameters,
    bytes: usize,
) -> Result<Option<ResultSet>, tokio_postgres::Error> {
    let types: Vec<Type> = parameters
        .types
        .iter()
        .map(|&oid| declared_type(oid))
        .collect();
    let statement = client.prepare_typed(sql, &types).await?;
    let values: Vec<ClientParameter<'_>> = parameters
        .values
        .iter()
        .enumerate()
        .map(|(index, value)| ClientParameter {
            value: value.as_deref(),
            binary: parameters.is_binary(index),
        })
        .collect();
    let stream = client.query_raw(&statement, values.iter()).await?;
    futures_util::pin_mut!(stream);
    let mut result = ResultSet {
        columns: statement
            .columns()
            .iter()
            .map(|column| column.name().to_owned())
            .collect(),
        rows: Vec::new(),
    };
    let mut held = 0usize;
    while let Some(row) = stream.next().await {
        let row = row?;
        if result.rows.len() >= MAX_SHADOW_ROWS {
            return Ok(None);
        }
        let values: Vec<Option<String>> = (0..row.len())
            .map(|i| {
                row.try_get::<_, Option<Rendered>>(i)
                    .ok()
                    .flatten()
                    .map(|rendered| rendered.0)
            })
            .collect();
        held = held.saturating_add(row_bytes(&values));
        if held > bytes {
            return Ok(None);
        }
        result.rows.push(values);
    }
    Ok(Some(result))
}
