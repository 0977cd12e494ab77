//! What agents send each other on the fabric besides Raft: the method numbers, and the
//! framing of forwarded HTTP requests (a JSON head and the raw body).

use bytes::{BufMut, Bytes, BytesMut};
use controlplane::api::ForwardedResponse;
use federation::{ErrorCode, RemoteError};

/// The fabric method of node daemons' requests (`NodeRequest` → `NodeReply`, JSON).
pub const METHOD_NODE: u16 = 2;
/// The fabric method of forwarded HTTP requests.
pub const METHOD_HTTP: u16 = 3;

/// The bytes of a forwarded request or answer: the JSON head's length (u32, big-endian), the
/// head, then the body as it is.
pub fn encode_http<T: serde::Serialize>(head: &T, body: Bytes) -> Result<Bytes, RemoteError> {
    let head = serde_json::to_vec(head).map_err(|e| {
        RemoteError::new(ErrorCode::Internal, format!("encoding a request head: {e}"))
    })?;
    let len = u32::try_from(head.len())
        .map_err(|_| RemoteError::new(ErrorCode::Internal, "a request head over 4 GiB"))?;
    let mut out = BytesMut::with_capacity(4 + head.len() + body.len());
    out.put_u32(len);
    out.put_slice(&head);
    out.put_slice(&body);
    Ok(out.freeze())
}

/// Splits what [`encode_http`] wrote into the head and the body.
pub fn decode_http<T: serde::de::DeserializeOwned>(bytes: Bytes) -> Result<(T, Bytes), String> {
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("a forwarded HTTP message shorter than its length prefix")?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|e| e.to_string())?;
    let end = 4usize
        .checked_add(len)
        .filter(|end| *end <= bytes.len())
        .ok_or("a forwarded HTTP message whose head runs past its end")?;
    let head = serde_json::from_slice(&bytes[4..end])
        .map_err(|e| format!("a forwarded HTTP head that is not valid: {e}"))?;
    Ok((head, bytes.slice(end..)))
}

/// Reads a server's answer to a forwarded request.
pub fn decode_http_response(bytes: Bytes) -> Result<ForwardedResponse, String> {
    let (mut head, body): (ForwardedResponse, Bytes) = decode_http(bytes)?;
    head.body = body;
    Ok(head)
}
