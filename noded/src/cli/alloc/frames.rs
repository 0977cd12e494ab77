//! Nomad's `StreamFrame`s as they arrive from `/v1/client/fs/logs` and `/v1/client/fs/stream`
//! (JSON objects one after another, split anywhere by the transport), and the last lines of
//! a window, for `alloc logs` and `alloc fs`.

use anyhow::{anyhow, bail};
use base64::Engine;

pub(super) fn last_lines(buf: &[u8], n: usize) -> &[u8] {
    let mut count = 0;
    let end = if buf.ends_with(b"\n") {
        buf.len() - 1
    } else {
        buf.len()
    };
    for i in (0..end).rev() {
        if buf[i] == b'\n' {
            count += 1;
            if count == n {
                return &buf[i + 1..];
            }
        }
    }
    buf
}

/// Splits the concatenated JSON `StreamFrame`s of the logs endpoint.
#[derive(Default)]
pub(super) struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub(super) fn push(&mut self, chunk: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut consumed = 0;
        {
            let mut it =
                serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde_json::Value>();
            loop {
                match it.next() {
                    Some(Ok(frame)) => {
                        consumed = it.byte_offset();
                        if let Some(data) = frame.get("Data").and_then(|d| d.as_str()) {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(data)
                                .map_err(|e| anyhow!("malformed log frame: {e}"))?;
                            out.push(bytes);
                        }
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => bail!("malformed log stream from the agent: {e}"),
                    None => break,
                }
            }
        }
        self.buf.drain(..consumed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_are_decoded() {
        let mut d = FrameDecoder::default();
        let a = br#"{"Offset":0,"Data":"aGVs","File":"x"}{"Offset":3,"Da"#;
        assert_eq!(d.push(a).unwrap(), vec![b"hel".to_vec()]);
        assert_eq!(
            d.push(br#"ta":"bG8=","File":"x"}"#).unwrap(),
            vec![b"lo".to_vec()]
        );
    }

    #[test]
    fn heartbeats_and_events_carry_no_data() {
        let mut d = FrameDecoder::default();
        let chunk = br#"{}{"File":"x","FileEvent":"file truncated"}{"Data":"YQ==","File":"x"}"#;
        assert_eq!(d.push(chunk).unwrap(), vec![b"a".to_vec()]);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\n", 5), b"a\n");
    }
}
