//! The one place that decides how Raft data is turned into bytes on disk.
//!
//! Every encoded value starts with a format byte, so a future format (a binary encoding, a
//! compressed one) can be introduced next to the old one and an old binary meeting a newer file
//! says so instead of misreading it. Format 1 is JSON: commands carry free-form JSON values (task
//! driver configuration), which a non-self-describing encoding cannot round-trip.

use std::io::Write;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Format byte of JSON bodies.
pub const FORMAT_JSON: u8 = 1;

/// The format new values are written in.
pub const CURRENT_FORMAT: u8 = FORMAT_JSON;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("the stored value is empty (no format byte)")]
    Empty,
    #[error(
        "the stored value has format {0}, which this build does not read (it reads format \
         {CURRENT_FORMAT}); it was probably written by a newer noded"
    )]
    UnknownFormat(u8),
    #[error("invalid json body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write the encoded value: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes a value: format byte, then body.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    encode_into(&mut out, value)?;
    Ok(out)
}

/// Encodes a value into a writer (for large values such as snapshots, without a buffer).
pub fn encode_into<W: Write, T: Serialize + ?Sized>(
    mut writer: W,
    value: &T,
) -> Result<(), CodecError> {
    writer.write_all(&[CURRENT_FORMAT])?;
    serde_json::to_writer(writer, value)?;
    Ok(())
}

/// Decodes a value written by [`encode`] or [`encode_into`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_JSON, body)) => Ok(serde_json::from_slice(body)?),
        Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_with_a_leading_format_byte() {
        let value = serde_json::json!({"command": "/bin/sh", "args": ["-c", "echo hi"], "n": 1.5});
        let bytes = encode(&value).unwrap();
        assert_eq!(bytes[0], FORMAT_JSON);
        let back: serde_json::Value = decode(&bytes).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn an_unknown_format_byte_is_refused_not_guessed() {
        let mut bytes = encode(&42u64).unwrap();
        bytes[0] = 9;
        let err = decode::<u64>(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::UnknownFormat(9)));
        assert!(err.to_string().contains("format 9"), "{err}");
    }

    #[test]
    fn empty_and_garbled_values_are_errors() {
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<u64>(&[FORMAT_JSON, b'{']),
            Err(CodecError::Json(_))
        ));
    }
}
