//! The parts of extended-protocol messages a shadow run copies: the parameter types a Parse
//! declares, and a Bind's statement, parameter formats and values. Decoded with bounds checks
//! (`None` on anything malformed, never a panic); the session still forwards the messages'
//! own bytes.

use super::frame::HEADER_LEN;

/// A Bind message, borrowed from its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    /// Format codes as sent: none (all text), one (for all) or one per parameter.
    pub formats: Vec<i16>,
    /// Each parameter's bytes; `None` is SQL NULL.
    pub values: Vec<Option<&'a [u8]>>,
}

/// Reads `N` bytes at `*at` and moves past them.
fn take<const N: usize>(body: &[u8], at: &mut usize) -> Option<[u8; N]> {
    let bytes = body.get(*at..at.checked_add(N)?)?;
    *at += N;
    bytes.try_into().ok()
}

/// Reads a NUL-terminated UTF-8 string at `*at` and moves past it.
fn take_str<'a>(body: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let rest = body.get(*at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    *at += end + 1;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The parameter type OIDs a Parse message declares (0 leaves a type to the server).
pub fn parse_parameter_types(frame: &[u8]) -> Option<Vec<u32>> {
    let body = frame.get(HEADER_LEN..)?;
    let mut at = 0;
    take_str(body, &mut at)?;
    take_str(body, &mut at)?;
    let count = u16::try_from(i16::from_be_bytes(take(body, &mut at)?)).ok()?;
    (0..count)
        .map(|_| take(body, &mut at).map(u32::from_be_bytes))
        .collect()
}

/// A Bind message's statement, formats and values.
pub fn bind(frame: &[u8]) -> Option<Bind<'_>> {
    let body = frame.get(HEADER_LEN..)?;
    let mut at = 0;
    let portal = take_str(body, &mut at)?;
    let statement = take_str(body, &mut at)?;
    let format_count = u16::try_from(i16::from_be_bytes(take(body, &mut at)?)).ok()?;
    let formats = (0..format_count)
        .map(|_| take(body, &mut at).map(i16::from_be_bytes))
        .collect::<Option<Vec<_>>>()?;
    let value_count = u16::try_from(i16::from_be_bytes(take(body, &mut at)?)).ok()?;
    if formats.len() > 1 && formats.len() != usize::from(value_count) {
        return None;
    }
    let mut values = Vec::with_capacity(usize::from(value_count));
    for _ in 0..value_count {
        let length = i32::from_be_bytes(take(body, &mut at)?);
        if length < 0 {
            values.push(None);
            continue;
        }
        let length = usize::try_from(length).ok()?;
        let value = body.get(at..at.checked_add(length)?)?;
        at += length;
        values.push(Some(value));
    }
    Some(Bind {
        portal,
        statement,
        formats,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_a_bind_and_a_parses_types() {
        let mut body = b"portal\0s1\0".to_vec();
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&2i16.to_be_bytes());
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(b"abc");
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        let frame = message(b'B', &body);
        let bound = bind(&frame).unwrap();
        assert_eq!(bound.portal, "portal");
        assert_eq!(bound.statement, "s1");
        assert_eq!(bound.formats, vec![0, 1]);
        assert_eq!(bound.values, vec![Some(&b"abc"[..]), None]);

        let mut parse = b"s1\0SELECT $1\0".to_vec();
        parse.extend_from_slice(&1i16.to_be_bytes());
        parse.extend_from_slice(&23u32.to_be_bytes());
        assert_eq!(
            parse_parameter_types(&message(b'P', &parse)),
            Some(vec![23])
        );
    }

    #[test]
    fn malformed_messages_read_as_none() {
        let mut body = b"\0s\0".to_vec();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&100i32.to_be_bytes());
        body.extend_from_slice(b"short");
        assert_eq!(bind(&message(b'B', &body)), None);
        assert_eq!(bind(&message(b'B', b"")), None);
        assert_eq!(bind(b"B"), None);
        let mut negative = b"\0s\0".to_vec();
        negative.extend_from_slice(&(-3i16).to_be_bytes());
        assert_eq!(bind(&message(b'B', &negative)), None);
        assert_eq!(
            parse_parameter_types(&message(b'P', b"s\0SELECT 1\0\0")),
            None
        );
        for cut in 0..body.len() {
            let _ = bind(&message(b'B', &body[..cut]));
        }
    }
}
